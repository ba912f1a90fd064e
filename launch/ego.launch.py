"""Launch the Ego node (`ego_node`, a lifecycle node) with its parameter file.

    ros2 launch ego_ros ego.launch.py image:=/camera/color/image_raw model:=toy device:=cuda:0

Arguments: namespace, image (the camera topic the node's `image` input is remapped to; the node
also reads `<image>/compressed` with image_transport:=compressed), params_file (default
config/ego.yaml), and model, device, concepts_file, autostart, which override params_file when
given (empty: keep the file's value). Sets FASTDDS_DEFAULT_PROFILES_FILE (and Humble's
FASTRTPS_DEFAULT_PROFILES_FILE) to config/fastdds_large_images.xml so raw camera images travel
through shared memory; every process on the machine that exchanges images with the node needs the
same profile.
"""

import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

PACKAGE = "ego_ros"
# Launch arguments that, when not empty, override the parameter of the same name in params_file.
OVERRIDES = ("model", "device", "concepts_file", "autostart")


def _ego_node(context, *args, **kwargs):
    overrides = {}
    for name in OVERRIDES:
        value = LaunchConfiguration(name).perform(context)
        if value != "":
            # YAML typing as on the command line: autostart:=true is a bool, model:=toy a string.
            overrides[name] = yaml.safe_load(value) if name == "autostart" else value
    image = LaunchConfiguration("image").perform(context)
    return [
        LifecycleNode(
            package=PACKAGE,
            executable="ego_node",
            name="ego_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[("image", image), ("image/compressed", image + "/compressed")],
        )
    ]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    profile = os.path.join(share, "config", "fastdds_large_images.xml")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("image", default_value="image", description="Camera topic (sensor_msgs/Image)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "ego.yaml"),
                              description="Parameter file of ego_node"),
        DeclareLaunchArgument("model", default_value="", description="Model (empty: params_file's)"),
        DeclareLaunchArgument("device", default_value="", description="auto, cpu or cuda:N (empty: params_file's)"),
        DeclareLaunchArgument("concepts_file", default_value="",
                              description="YAML of concepts to introduce at start (empty: params_file's)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate at start (empty: params_file's)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", profile),
        OpaqueFunction(function=_ego_node),
    ])
