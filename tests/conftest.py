pytest_plugins = ["course.grading"]
