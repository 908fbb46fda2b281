pytest_plugins = ["tests.plugins.seaweedfs", "tests.plugins.faultproxy"]
