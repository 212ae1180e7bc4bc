"""lgcvd on a ROS 2 graph, over DDS with Cyclone DDS and without rclpy (README, "Use it with
ROS 2"): `messages` (the ROS 2 message types), `dds` (domain, topic names, QoS), `images`
(camera messages to frames, frames to messages), `node` (the forecasting node), `ledger` (what
it remembers, bounded), `status` (its /diagnostics), `cli` (`lgcvd-ros2`) and `play` (a video played as a camera topic).

Like `cli/` and `serve/`, this layer uses the rest of the runtime and nothing uses it. Its
modules need the ros extra (cyclonedds), except `cli`, which says so in one line. Importing
this package imports nothing.
"""
