"""ego_ros.ros."""
