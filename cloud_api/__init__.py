"""cloud_api."""
