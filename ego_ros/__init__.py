"""ego_ros: embedding-guided personalization of vision-language models for ROS 2 robots."""

__version__ = "0.1.0"
