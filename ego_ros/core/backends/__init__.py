"""ego_ros.core.backends."""
