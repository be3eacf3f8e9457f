pytest_plugins = ["course.grading", "course.redis_server"]
