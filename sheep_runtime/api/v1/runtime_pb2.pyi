import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PortMapping(_message.Message):
    __slots__ = ("protocol", "host_ip", "host_port", "container_port", "count")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    host_ip: str
    host_port: int
    container_port: int
    count: int
    def __init__(self, protocol: _Optional[str] = ..., host_ip: _Optional[str] = ..., host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class NetworkAttachmentRequest(_message.Message):
    __slots__ = ("network", "ip", "ports", "interface_name", "aliases", "ip6")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    IP6_FIELD_NUMBER: _ClassVar[int]
    network: str
    ip: str
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    interface_name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    ip6: str
    def __init__(self, network: _Optional[str] = ..., ip: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., interface_name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., ip6: _Optional[str] = ...) -> None: ...

class CreateContainerRequest(_message.Message):
    __slots__ = ("name", "command", "env", "hostname", "networks", "network_mode", "privileged", "cap_add", "image", "rootfs", "working_dir", "restart_policy", "stop_signal", "stop_timeout_seconds", "resources", "log", "auto_remove")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    NETWORK_MODE_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ROOTFS_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STOP_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    AUTO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    name: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    hostname: str
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachmentRequest]
    network_mode: str
    privileged: bool
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    image: str
    rootfs: str
    working_dir: str
    restart_policy: RestartPolicy
    stop_signal: str
    stop_timeout_seconds: int
    resources: Resources
    log: LogConfig
    auto_remove: bool
    def __init__(self, name: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachmentRequest, _Mapping]]] = ..., network_mode: _Optional[str] = ..., privileged: _Optional[bool] = ..., cap_add: _Optional[_Iterable[str]] = ..., image: _Optional[str] = ..., rootfs: _Optional[str] = ..., working_dir: _Optional[str] = ..., restart_policy: _Optional[_Union[RestartPolicy, _Mapping]] = ..., stop_signal: _Optional[str] = ..., stop_timeout_seconds: _Optional[int] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., log: _Optional[_Union[LogConfig, _Mapping]] = ..., auto_remove: _Optional[bool] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("name", "max_retries")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_retries: int
    def __init__(self, name: _Optional[str] = ..., max_retries: _Optional[int] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("memory_bytes", "cpus", "pids_limit")
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    memory_bytes: int
    cpus: float
    pids_limit: int
    def __init__(self, memory_bytes: _Optional[int] = ..., cpus: _Optional[float] = ..., pids_limit: _Optional[int] = ...) -> None: ...

class LogConfig(_message.Message):
    __slots__ = ("max_bytes", "max_files")
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_FILES_FIELD_NUMBER: _ClassVar[int]
    max_bytes: int
    max_files: int
    def __init__(self, max_bytes: _Optional[int] = ..., max_files: _Optional[int] = ...) -> None: ...

class StartContainerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RestartContainerRequest(_message.Message):
    __slots__ = ("id", "timeout_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_seconds: int
    def __init__(self, id: _Optional[str] = ..., timeout_seconds: _Optional[int] = ...) -> None: ...

class WaitContainerRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WaitContainerResponse(_message.Message):
    __slots__ = ("exit_code", "container")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    container: Container
    def __init__(self, exit_code: _Optional[int] = ..., container: _Optional[_Union[Container, _Mapping]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("id", "follow", "tail", "since", "until", "streams")
    ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    id: str
    follow: bool
    tail: int
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    streams: _containers.RepeatedScalarFieldContainer[LogEntry.Stream]
    def __init__(self, id: _Optional[str] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., streams: _Optional[_Iterable[_Union[LogEntry.Stream, str]]] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("stream", "time", "data", "partial")
    class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STREAM_UNSPECIFIED: _ClassVar[LogEntry.Stream]
        STDOUT: _ClassVar[LogEntry.Stream]
        STDERR: _ClassVar[LogEntry.Stream]
    STREAM_UNSPECIFIED: LogEntry.Stream
    STDOUT: LogEntry.Stream
    STDERR: LogEntry.Stream
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    stream: LogEntry.Stream
    time: _timestamp_pb2.Timestamp
    data: bytes
    partial: bool
    def __init__(self, stream: _Optional[_Union[LogEntry.Stream, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[bytes] = ..., partial: _Optional[bool] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("id", "command", "env", "working_dir", "timeout_seconds", "max_output_bytes")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    working_dir: str
    timeout_seconds: int
    max_output_bytes: int
    def __init__(self, id: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., working_dir: _Optional[str] = ..., timeout_seconds: _Optional[int] = ..., max_output_bytes: _Optional[int] = ...) -> None: ...

class ExecResponse(_message.Message):
    __slots__ = ("exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "timed_out")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    def __init__(self, exit_code: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class InterfaceStats(_message.Message):
    __slots__ = ("interface_name", "network", "rx_bytes", "rx_packets", "rx_errors", "rx_dropped", "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    RX_BYTES_FIELD_NUMBER: _ClassVar[int]
    RX_PACKETS_FIELD_NUMBER: _ClassVar[int]
    RX_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RX_DROPPED_FIELD_NUMBER: _ClassVar[int]
    TX_BYTES_FIELD_NUMBER: _ClassVar[int]
    TX_PACKETS_FIELD_NUMBER: _ClassVar[int]
    TX_ERRORS_FIELD_NUMBER: _ClassVar[int]
    TX_DROPPED_FIELD_NUMBER: _ClassVar[int]
    interface_name: str
    network: str
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int
    def __init__(self, interface_name: _Optional[str] = ..., network: _Optional[str] = ..., rx_bytes: _Optional[int] = ..., rx_packets: _Optional[int] = ..., rx_errors: _Optional[int] = ..., rx_dropped: _Optional[int] = ..., tx_bytes: _Optional[int] = ..., tx_packets: _Optional[int] = ..., tx_errors: _Optional[int] = ..., tx_dropped: _Optional[int] = ...) -> None: ...

class ContainerStats(_message.Message):
    __slots__ = ("container_id", "name", "time", "interfaces", "cgroup_readable", "cpu_usage_ns", "memory_usage_bytes", "memory_limit_bytes", "pids_current", "pids_limit")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    CGROUP_READABLE_FIELD_NUMBER: _ClassVar[int]
    CPU_USAGE_NS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_CURRENT_FIELD_NUMBER: _ClassVar[int]
    PIDS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    name: str
    time: _timestamp_pb2.Timestamp
    interfaces: _containers.RepeatedCompositeFieldContainer[InterfaceStats]
    cgroup_readable: bool
    cpu_usage_ns: int
    memory_usage_bytes: int
    memory_limit_bytes: int
    pids_current: int
    pids_limit: int
    def __init__(self, container_id: _Optional[str] = ..., name: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interfaces: _Optional[_Iterable[_Union[InterfaceStats, _Mapping]]] = ..., cgroup_readable: _Optional[bool] = ..., cpu_usage_ns: _Optional[int] = ..., memory_usage_bytes: _Optional[int] = ..., memory_limit_bytes: _Optional[int] = ..., pids_current: _Optional[int] = ..., pids_limit: _Optional[int] = ...) -> None: ...

class ImportImageRequest(_message.Message):
    __slots__ = ("name", "source", "trusted")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    trusted: bool
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., trusted: _Optional[bool] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("id", "name", "layers", "size_bytes", "created_at", "env", "entrypoint", "cmd", "working_dir")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    ENTRYPOINT_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    size_bytes: int
    created_at: _timestamp_pb2.Timestamp
    env: _containers.RepeatedScalarFieldContainer[str]
    entrypoint: _containers.RepeatedScalarFieldContainer[str]
    cmd: _containers.RepeatedScalarFieldContainer[str]
    working_dir: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., size_bytes: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., env: _Optional[_Iterable[str]] = ..., entrypoint: _Optional[_Iterable[str]] = ..., cmd: _Optional[_Iterable[str]] = ..., working_dir: _Optional[str] = ...) -> None: ...

class ListImagesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListImagesResponse(_message.Message):
    __slots__ = ("images",)
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class RemoveImageRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RemoveImageResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class StopContainerRequest(_message.Message):
    __slots__ = ("id", "timeout_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_seconds: int
    def __init__(self, id: _Optional[str] = ..., timeout_seconds: _Optional[int] = ...) -> None: ...

class RemoveContainerRequest(_message.Message):
    __slots__ = ("id", "force")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    force: bool
    def __init__(self, id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveContainerResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListContainersRequest(_message.Message):
    __slots__ = ("filters",)
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListContainersResponse(_message.Message):
    __slots__ = ("containers",)
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[Container]
    def __init__(self, containers: _Optional[_Iterable[_Union[Container, _Mapping]]] = ...) -> None: ...

class InspectRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class AttachNetworkRequest(_message.Message):
    __slots__ = ("container_id", "network", "ip", "ports", "interface_name", "aliases", "ip6")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    IP6_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    network: str
    ip: str
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    interface_name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    ip6: str
    def __init__(self, container_id: _Optional[str] = ..., network: _Optional[str] = ..., ip: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., interface_name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., ip6: _Optional[str] = ...) -> None: ...

class DetachNetworkRequest(_message.Message):
    __slots__ = ("container_id", "network")
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    container_id: str
    network: str
    def __init__(self, container_id: _Optional[str] = ..., network: _Optional[str] = ...) -> None: ...

class DetachNetworkResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateNetworkRequest(_message.Message):
    __slots__ = ("name", "subnet", "gateway", "bridge", "mtu", "internal", "icc", "dns", "subnet6", "gateway6")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    ICC_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    SUBNET6_FIELD_NUMBER: _ClassVar[int]
    GATEWAY6_FIELD_NUMBER: _ClassVar[int]
    name: str
    subnet: str
    gateway: str
    bridge: str
    mtu: int
    internal: bool
    icc: bool
    dns: bool
    subnet6: str
    gateway6: str
    def __init__(self, name: _Optional[str] = ..., subnet: _Optional[str] = ..., gateway: _Optional[str] = ..., bridge: _Optional[str] = ..., mtu: _Optional[int] = ..., internal: _Optional[bool] = ..., icc: _Optional[bool] = ..., dns: _Optional[bool] = ..., subnet6: _Optional[str] = ..., gateway6: _Optional[str] = ...) -> None: ...

class InspectNetworkRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListNetworksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNetworksResponse(_message.Message):
    __slots__ = ("networks",)
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    networks: _containers.RepeatedCompositeFieldContainer[Network]
    def __init__(self, networks: _Optional[_Iterable[_Union[Network, _Mapping]]] = ...) -> None: ...

class RemoveNetworkRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RemoveNetworkResponse(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("filters", "since")
    class FiltersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    filters: _containers.ScalarMap[str, str]
    since: _timestamp_pb2.Timestamp
    def __init__(self, filters: _Optional[_Mapping[str, str]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("version", "api_version", "kernel", "backends")
    class BackendsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    api_version: str
    kernel: str
    backends: _containers.ScalarMap[str, str]
    def __init__(self, version: _Optional[str] = ..., api_version: _Optional[str] = ..., kernel: _Optional[str] = ..., backends: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Container(_message.Message):
    __slots__ = ("id", "name", "state", "pid", "exit_code", "command", "hostname", "created_at", "started_at", "finished_at", "networks", "ports", "netns_path", "log_path", "env", "state_reason", "privileged", "capabilities", "image", "rootfs", "working_dir", "restart_policy", "restart_count", "restarting", "stop_signal", "stop_timeout_seconds", "resources", "log", "auto_remove")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Container.State]
        CREATED: _ClassVar[Container.State]
        RUNNING: _ClassVar[Container.State]
        EXITED: _ClassVar[Container.State]
        UNKNOWN: _ClassVar[Container.State]
    STATE_UNSPECIFIED: Container.State
    CREATED: Container.State
    RUNNING: Container.State
    EXITED: Container.State
    UNKNOWN: Container.State
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    NETNS_PATH_FIELD_NUMBER: _ClassVar[int]
    LOG_PATH_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGED_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ROOTFS_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESTARTING_FIELD_NUMBER: _ClassVar[int]
    STOP_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    STOP_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    AUTO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    state: Container.State
    pid: int
    exit_code: int
    command: _containers.RepeatedScalarFieldContainer[str]
    hostname: str
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    networks: _containers.RepeatedCompositeFieldContainer[NetworkAttachment]
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    netns_path: str
    log_path: str
    env: _containers.ScalarMap[str, str]
    state_reason: str
    privileged: bool
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    image: str
    rootfs: str
    working_dir: str
    restart_policy: RestartPolicy
    restart_count: int
    restarting: bool
    stop_signal: str
    stop_timeout_seconds: int
    resources: Resources
    log: LogConfig
    auto_remove: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[Container.State, str]] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., command: _Optional[_Iterable[str]] = ..., hostname: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., networks: _Optional[_Iterable[_Union[NetworkAttachment, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., netns_path: _Optional[str] = ..., log_path: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., state_reason: _Optional[str] = ..., privileged: _Optional[bool] = ..., capabilities: _Optional[_Iterable[str]] = ..., image: _Optional[str] = ..., rootfs: _Optional[str] = ..., working_dir: _Optional[str] = ..., restart_policy: _Optional[_Union[RestartPolicy, _Mapping]] = ..., restart_count: _Optional[int] = ..., restarting: _Optional[bool] = ..., stop_signal: _Optional[str] = ..., stop_timeout_seconds: _Optional[int] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., log: _Optional[_Union[LogConfig, _Mapping]] = ..., auto_remove: _Optional[bool] = ...) -> None: ...

class NetworkAttachment(_message.Message):
    __slots__ = ("network", "interface_name", "ip_address", "prefix_length", "gateway", "mac_address", "host_interface", "link_state", "ports", "container_id", "aliases", "ip6_address", "prefix6_length", "gateway6")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_NAME_FIELD_NUMBER: _ClassVar[int]
    IP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    MAC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOST_INTERFACE_FIELD_NUMBER: _ClassVar[int]
    LINK_STATE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    IP6_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PREFIX6_LENGTH_FIELD_NUMBER: _ClassVar[int]
    GATEWAY6_FIELD_NUMBER: _ClassVar[int]
    network: str
    interface_name: str
    ip_address: str
    prefix_length: int
    gateway: str
    mac_address: str
    host_interface: str
    link_state: str
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    container_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    ip6_address: str
    prefix6_length: int
    gateway6: str
    def __init__(self, network: _Optional[str] = ..., interface_name: _Optional[str] = ..., ip_address: _Optional[str] = ..., prefix_length: _Optional[int] = ..., gateway: _Optional[str] = ..., mac_address: _Optional[str] = ..., host_interface: _Optional[str] = ..., link_state: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., container_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., ip6_address: _Optional[str] = ..., prefix6_length: _Optional[int] = ..., gateway6: _Optional[str] = ...) -> None: ...

class Network(_message.Message):
    __slots__ = ("id", "name", "bridge", "subnet", "gateway", "mtu", "internal", "icc", "leases_allocated", "leases_capacity", "created_at", "containers", "dns", "subnet6", "gateway6", "leases6_allocated")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    BRIDGE_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    ICC_FIELD_NUMBER: _ClassVar[int]
    LEASES_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    LEASES_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    SUBNET6_FIELD_NUMBER: _ClassVar[int]
    GATEWAY6_FIELD_NUMBER: _ClassVar[int]
    LEASES6_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    mtu: int
    internal: bool
    icc: bool
    leases_allocated: int
    leases_capacity: int
    created_at: _timestamp_pb2.Timestamp
    containers: _containers.RepeatedScalarFieldContainer[str]
    dns: bool
    subnet6: str
    gateway6: str
    leases6_allocated: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., bridge: _Optional[str] = ..., subnet: _Optional[str] = ..., gateway: _Optional[str] = ..., mtu: _Optional[int] = ..., internal: _Optional[bool] = ..., icc: _Optional[bool] = ..., leases_allocated: _Optional[int] = ..., leases_capacity: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., containers: _Optional[_Iterable[str]] = ..., dns: _Optional[bool] = ..., subnet6: _Optional[str] = ..., gateway6: _Optional[str] = ..., leases6_allocated: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "time", "type", "container_id", "network", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: int
    time: _timestamp_pb2.Timestamp
    type: str
    container_id: str
    network: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., type: _Optional[str] = ..., container_id: _Optional[str] = ..., network: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterNode(_message.Message):
    __slots__ = ("name", "underlay_address", "subnet", "vtep_mac", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UNDERLAY_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    VTEP_MAC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    underlay_address: str
    subnet: str
    vtep_mac: str
    state: str
    def __init__(self, name: _Optional[str] = ..., underlay_address: _Optional[str] = ..., subnet: _Optional[str] = ..., vtep_mac: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("enabled", "backend", "network", "subnet_length", "vni", "port", "self", "nodes", "etcd_endpoints")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    SUBNET_LENGTH_FIELD_NUMBER: _ClassVar[int]
    VNI_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    SELF_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ETCD_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    backend: str
    network: str
    subnet_length: int
    vni: int
    port: int
    self: ClusterNode
    nodes: _containers.RepeatedCompositeFieldContainer[ClusterNode]
    etcd_endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self_, enabled: _Optional[bool] = ..., backend: _Optional[str] = ..., network: _Optional[str] = ..., subnet_length: _Optional[int] = ..., vni: _Optional[int] = ..., port: _Optional[int] = ..., self: _Optional[_Union[ClusterNode, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[ClusterNode, _Mapping]]] = ..., etcd_endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class LeaveClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaveClusterResponse(_message.Message):
    __slots__ = ("subnet",)
    SUBNET_FIELD_NUMBER: _ClassVar[int]
    subnet: str
    def __init__(self, subnet: _Optional[str] = ...) -> None: ...
