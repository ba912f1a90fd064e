"""ego_ros.toy."""
