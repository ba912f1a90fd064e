"""ego_ros.core."""
