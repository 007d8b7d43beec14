// Types of @sheep/runtime-client. Field names are the proto's (snake_case); 64-bit
// integers and Timestamp seconds are strings, enums are their names. The full
// reference of every field: docs/api.md of sheep-runtime.
import type { ChannelOptions, ClientReadableStream, ServiceError } from "@grpc/grpc-js";

export { ServiceError };
export declare const status: typeof import("@grpc/grpc-js").status;
/** The directory the API's .proto was loaded from. */
export declare const PROTO_ROOT: string;
/** Where sheepd listens unless told otherwise (or $SHEEP_SOCKET). */
export declare const DEFAULT_SOCKET: string;

export interface Timestamp {
  seconds: string;
  nanos: number;
}

export interface PortMapping {
  protocol: string;
  host_ip: string;
  host_port: number;
  container_port: number;
  count: number;
}

export interface NetworkAttachmentRequest {
  network: string;
  ip?: string;
  ports?: Partial<PortMapping>[];
  interface_name?: string;
}

export interface CreateContainerRequest {
  command: string[];
  name?: string;
  env?: Record<string, string>;
  hostname?: string;
  networks?: NetworkAttachmentRequest[];
  /** "" (default networking) or "none" (loopback only). */
  network_mode?: "" | "none";
  privileged?: boolean;
  cap_add?: string[];
}

export interface AttachNetworkRequest {
  container_id: string;
  network: string;
  ip?: string;
  ports?: Partial<PortMapping>[];
  interface_name?: string;
}

export interface CreateNetworkRequest {
  name: string;
  subnet: string;
  gateway?: string;
  bridge?: string;
  mtu?: number;
  internal?: boolean;
  icc?: boolean;
}

export interface NetworkAttachment {
  network: string;
  interface_name: string;
  ip_address: string;
  prefix_length: number;
  gateway: string;
  mac_address: string;
  host_interface: string;
  link_state: string;
  ports: PortMapping[];
  container_id: string;
}

export type ContainerState = "STATE_UNSPECIFIED" | "CREATED" | "RUNNING" | "EXITED" | "UNKNOWN";

export interface Container {
  id: string;
  name: string;
  state: ContainerState;
  pid: number;
  exit_code: number;
  command: string[];
  hostname: string;
  created_at: Timestamp | null;
  started_at: Timestamp | null;
  finished_at: Timestamp | null;
  networks: NetworkAttachment[];
  ports: PortMapping[];
  netns_path: string;
  log_path: string;
  env: Record<string, string>;
  state_reason: string;
  privileged: boolean;
  capabilities: string[];
}

export interface Network {
  id: string;
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  mtu: number;
  internal: boolean;
  icc: boolean;
  leases_allocated: string;
  leases_capacity: string;
  created_at: Timestamp | null;
  containers: string[];
}

export interface Event {
  id: string;
  time: Timestamp | null;
  type: string;
  container_id: string;
  network: string;
  attributes: Record<string, string>;
}

export interface VersionResponse {
  version: string;
  api_version: string;
  kernel: string;
  backends: Record<string, string>;
}

export interface EventFilters {
  /** Container id or name. */
  container?: string;
  /** Network name. */
  network?: string;
  /** Prefix of the event type, e.g. "container.". */
  type?: string;
}

export interface SheepClientOptions {
  /** The Unix socket (default: $SHEEP_SOCKET, else /run/sheep/sheep.sock). */
  socket?: string;
  /** Deadline of unary calls, in seconds (default 60). */
  timeoutSeconds?: number;
  /** grpc-js channel options. */
  options?: ChannelOptions;
}

/** A client of sheepd; each unary method returns a promise that rejects with the
 * grpc-js ServiceError (`code`: a `status` value, `details`: the daemon's message). */
export declare class SheepClient {
  constructor(opts?: SheepClientOptions);
  /** The gRPC target, "unix:/run/sheep/sheep.sock". */
  readonly target: string;
  timeoutSeconds: number;
  call<T = unknown>(method: string, request?: object,
    opts?: { timeoutSeconds?: number }): Promise<T>;
  version(): Promise<VersionResponse>;
  createContainer(request: CreateContainerRequest): Promise<Container>;
  /** By full id, unique id prefix or name. */
  inspect(id: string): Promise<Container>;
  listContainers(opts?: { all?: boolean; filters?: Record<string, string> }
  ): Promise<Container[]>;
  stopContainer(id: string, opts?: { timeoutSeconds?: number }): Promise<Container>;
  removeContainer(id: string, opts?: { force?: boolean }): Promise<string>;
  attachNetwork(request: AttachNetworkRequest): Promise<NetworkAttachment>;
  detachNetwork(containerId: string, network: string): Promise<void>;
  createNetwork(request: CreateNetworkRequest): Promise<Network>;
  inspectNetwork(id: string): Promise<Network>;
  listNetworks(): Promise<Network[]>;
  removeNetwork(id: string): Promise<string>;
  watchEvents(opts?: { filters?: EventFilters; since?: Date }): ClientReadableStream<Event>;
  close(): void;
}
