// @sheep/runtime-client: a typed Node.js client of sheep-runtime's gRPC API
// (sheep.runtime.v1) over sheepd's Unix socket. Types: index.d.ts.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_FILE = "sheep/runtime/v1/runtime.proto";
const DEFAULT_SOCKET = "/run/sheep/sheep.sock";
const DEFAULT_TIMEOUT_SECONDS = 60;
// In a packed package the proto is bundled under proto/ (scripts/bundle-proto.js runs at
// pack time); in a checkout it is read from the repository's proto/.
const PROTO_ROOT = [path.join(__dirname, "proto"), path.join(__dirname, "..", "..", "proto")]
  .find((dir) => fs.existsSync(path.join(dir, PROTO_FILE)));
if (PROTO_ROOT === undefined) {
  throw new Error(`@sheep/runtime-client: ${PROTO_FILE} is missing: pack the package with ` +
    "`npm pack --ignore-scripts=false` (its prepack bundles the proto)");
}

// keepCase: the proto field names (container_id), as grpcurl prints them; 64-bit
// integers and enums as strings ("1", "RUNNING"); defaults filled in.
const definition = protoLoader.loadSync(PROTO_FILE, {
  includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).sheep.runtime.v1;

/** @param {string} socket */
function unixTarget(socket) {
  if (socket.startsWith("unix://")) return "unix:" + socket.slice("unix://".length);
  return socket.startsWith("unix:") ? socket : `unix:${socket}`;
}

/** A client of sheepd. See index.d.ts for the types of requests and replies. */
class SheepClient {
  /** @param {{socket?: string, timeoutSeconds?: number, options?: object}} [opts] */
  constructor(opts = {}) {
    const socket = opts.socket || process.env.SHEEP_SOCKET || DEFAULT_SOCKET;
    this.target = unixTarget(socket);
    this.timeoutSeconds = opts.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
    this.stub = new v1.RuntimeService(this.target, grpc.credentials.createInsecure(),
      opts.options || {});
  }

  /** A unary call as a promise; a failure rejects with the grpc-js ServiceError
   * (`code`, `details`, `metadata`). */
  call(method, request = {}, { timeoutSeconds } = {}) {
    const seconds = timeoutSeconds ?? this.timeoutSeconds;
    return new Promise((resolve, reject) => {
      this.stub[method](request, { deadline: new Date(Date.now() + seconds * 1000) },
        (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  version() { return this.call("Version"); }
  createContainer(request) { return this.call("CreateContainer", request); }
  inspect(id) { return this.call("Inspect", { id }); }
  async listContainers({ all = false, filters = {} } = {}) {
    const f = all ? { ...filters, all: "true" } : filters;
    return (await this.call("ListContainers", { filters: f })).containers;
  }
  stopContainer(id, { timeoutSeconds = 0 } = {}) {
    const grace = timeoutSeconds || 10;
    return this.call("StopContainer", { id, timeout_seconds: timeoutSeconds },
      { timeoutSeconds: this.timeoutSeconds + grace });
  }
  async removeContainer(id, { force = false } = {}) {
    return (await this.call("RemoveContainer", { id, force })).id;
  }
  attachNetwork(request) { return this.call("AttachNetwork", request); }
  async detachNetwork(containerId, network) {
    await this.call("DetachNetwork", { container_id: containerId, network });
  }
  createNetwork(request) { return this.call("CreateNetwork", request); }
  inspectNetwork(id) { return this.call("InspectNetwork", { id }); }
  async listNetworks() { return (await this.call("ListNetworks")).networks; }
  async removeNetwork(id) { return (await this.call("RemoveNetwork", { id })).id; }

  /** The WatchEvents stream: a readable of events (`for await`, or "data"/"error"/"end"
   * events); `cancel()` it to stop. `since` (a Date) replays retained events first. */
  watchEvents({ filters = {}, since } = {}) {
    const request = { filters };
    if (since !== undefined) request.since = timestamp(since);
    return this.stub.WatchEvents(request);
  }

  close() { this.stub.close(); }
}

/** @param {Date} when */
function timestamp(when) {
  const ms = when.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

module.exports = { SheepClient, status: grpc.status, PROTO_ROOT, DEFAULT_SOCKET };
