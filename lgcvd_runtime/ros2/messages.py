"""The ROS 2 messages the node speaks, as Cyclone DDS types: `sensor_msgs/Image`,
`sensor_msgs/CompressedImage`, `std_msgs/Header` and `diagnostic_msgs/DiagnosticArray`, with
the DDS type names ROS 2 gives them (`sensor_msgs::msg::dds_::Image_`) and their fields in the
order and IDL types of the .msg files (ROS `uint8[]` is `sequence<uint8>`, `byte` is `octet`),
final structs in plain CDR, as rmw_cyclonedds_cpp writes them. tests/test_ros2.py checks the
bytes against rosbags' ROS 2 CDR, an independent serialiser.

Pixels: the Python binding would read and write a `sequence<uint8>` one element at a time (a
640x480 rgb8 frame in ~0.2 s); the `data` fields keep that IDL type (for the type the DDS
discovery announces) but are (de)serialised by the binding's bytes machine, which writes the
same CDR (a uint32 length, then the bytes), so `data` is a `bytes` (or any buffer) here.

The binding reads these annotations at import, so this module evaluates them (no `from
__future__ import annotations`). Knows the cyclonedds package (the ros extra) and nothing of models, frames or lgcvd.
"""

from dataclasses import dataclass, field

from cyclonedds.idl import IdlStruct
from cyclonedds.idl._machinery import BytesMachine
from cyclonedds.idl.annotations import final
from cyclonedds.idl.types import byte, int32, sequence, uint8, uint32

NS = 1_000_000_000


@final
@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32
    nanosec: uint32

    @classmethod
    def of(cls, ns: int) -> "Time":
        """The time `ns` nanoseconds after the epoch of its clock."""
        return cls(ns // NS, ns % NS)

    def ns(self) -> int:
        return self.sec * NS + self.nanosec


@final
@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time
    frame_id: str


@final
@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header
    height: uint32
    width: uint32
    encoding: str
    is_bigendian: uint8
    step: uint32  # bytes per row
    data: sequence[uint8]  # bytes (module header)


@final
@dataclass
class CompressedImage(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header
    format: str  # "jpeg", "png", or e.g. "rgb8; jpeg compressed bgr8"
    data: sequence[uint8]  # bytes (module header)


@final
@dataclass
class KeyValue(IdlStruct, typename="diagnostic_msgs::msg::dds_::KeyValue_"):
    key: str
    value: str


OK, WARN, ERROR, STALE = 0, 1, 2, 3  # DiagnosticStatus levels


@final
@dataclass
class DiagnosticStatus(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticStatus_"):
    level: byte
    name: str
    message: str
    hardware_id: str
    values: sequence[KeyValue] = field(default_factory=list)


@final
@dataclass
class DiagnosticArray(IdlStruct, typename="diagnostic_msgs::msg::dds_::DiagnosticArray_"):
    header: Header
    status: sequence[DiagnosticStatus]


def _octets_as_bytes(message: type[IdlStruct]) -> None:
    """(De)serialise `message.data` as bytes (module header): the same CDR, written at once."""
    idl = message.__idl__
    idl.populate()
    for machine in (idl.v1_machine, idl.v2_machine):
        machine.members_machines["data"] = BytesMachine()


for _pictures in (Image, CompressedImage):
    _octets_as_bytes(_pictures)
