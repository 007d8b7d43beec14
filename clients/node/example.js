#!/usr/bin/env node
// A sheep-runtime client in Node.js: create a container, inspect it, stream its events,
// remove it. Loads the API from the .proto at run time (@grpc/proto-loader) and talks to
// sheepd over its Unix socket (@grpc/grpc-js supports "unix:" targets).
//
//   SHEEP_SOCKET=/run/sheep/sheep.sock node example.js
//
// Every step prints one JSON line ({"step": ...}) so a program (or a test) can follow it.
// Environment:
//   SHEEP_SOCKET        the daemon's socket (default /run/sheep/sheep.sock)
//   SHEEP_NETWORK_MODE  "" (default network) or "none" (loopback only)
//   SHEEP_WATCH_SECONDS how long to stream events at most (default 10)
//   SHEEP_LINGER_SECONDS how long to stream before removing the container (default 1)
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.join(__dirname, "..", "..", "proto");
const PROTO = "sheep/runtime/v1/runtime.proto";
const socket = process.env.SHEEP_SOCKET || "/run/sheep/sheep.sock";
const networkMode = process.env.SHEEP_NETWORK_MODE || "";
const watchSeconds = Number(process.env.SHEEP_WATCH_SECONDS || "10");
const lingerSeconds = Number(process.env.SHEEP_LINGER_SECONDS || "1");
const CALL_SECONDS = 30;

function emit(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

// keepCase: the proto field names (container_id, not containerId), as grpcurl prints them;
// longs and enums as strings ("RUNNING"); defaults filled in.
const definition = protoLoader.loadSync(PROTO, {
  includeDirs: [PROTO_ROOT],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).sheep.runtime.v1;

const target = socket.startsWith("unix:") ? socket : `unix:${socket}`;
const client = new v1.RuntimeService(target, grpc.credentials.createInsecure());

function deadline() {
  return new Date(Date.now() + CALL_SECONDS * 1000);
}

// A unary call as a promise; failures keep their gRPC status code and details.
function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (err, reply) =>
      err ? reject(err) : resolve(reply));
  });
}

function timestampOf(ms) {
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}

function containerFields(c) {
  return {
    id: c.id,
    name: c.name,
    state: c.state,
    pid: c.pid,
    command: c.command,
    networks: c.networks.map((n) => ({ network: n.network, ip_address: n.ip_address,
      interface_name: n.interface_name })),
    netns_path: c.netns_path,
  };
}

// Stream the container's events (replaying from `sinceMs`, so none is missed), remove the
// container `lingerSeconds` after it has started, and resolve when both the removal has been answered and
// its container.removed event has arrived, or after `seconds`.
function watchAndRemove(id, sinceMs, seconds) {
  return new Promise((resolve, reject) => {
    const seen = [];
    let removing = false;
    let removed = false; // RemoveContainer answered
    let finished = false;
    const stream = client.WatchEvents({ filters: { container: id }, since: timestampOf(sinceMs) });
    const stop = () => {
      finished = true;
      clearTimeout(timer);
      clearTimeout(fallback);
      clearTimeout(lingering);
      stream.cancel();
    };
    const finish = (why) => {
      if (finished) return;
      stop();
      resolve({ seen, why });
    };
    const fail = (err) => {
      if (finished) return;
      stop();
      reject(err);
    };
    const maybeDone = () => {
      if (removed && seen.includes("container.removed")) finish("removed");
    };
    const remove = () => {
      if (removing || finished) return;
      removing = true;
      call("RemoveContainer", { id, force: true })
        .then((r) => { emit("remove", { id: r.id }); removed = true; maybeDone(); })
        .catch(fail);
    };
    const timer = setTimeout(() => finish("timeout"), seconds * 1000);
    // If container.started were somehow not replayed, still remove after a while.
    const fallback = setTimeout(remove, Math.min(lingerSeconds + 2, seconds / 2) * 1000);
    let lingering = null;
    stream.on("data", (e) => {
      if (finished) return;
      seen.push(e.type);
      emit("event", { id: e.id, type: e.type, container_id: e.container_id,
        network: e.network, attributes: e.attributes });
      if (e.type === "container.started" && lingering === null) {
        lingering = setTimeout(remove, lingerSeconds * 1000);
      }
      maybeDone();
    });
    stream.on("error", (err) => {
      if (finished && err.code === grpc.status.CANCELLED) return; // our own cancel
      fail(err);
    });
    stream.on("end", () => finish("end"));
  });
}

async function main() {
  emit("connect", { target });
  const version = await call("Version", {});
  emit("version", { version: version.version, api_version: version.api_version });

  const since = Date.now() - 1000; // a little slack for clock rounding
  const created = await call("CreateContainer", {
    name: `node-${process.pid}`,
    command: ["/bin/sleep", "30"],
    network_mode: networkMode,
  });
  emit("create", containerFields(created));

  const inspected = await call("Inspect", { id: created.id });
  emit("inspect", containerFields(inspected));

  const { seen, why } = await watchAndRemove(created.id, since, watchSeconds);

  // Gone for good: inspecting it now is NOT_FOUND.
  let goneCode = null;
  try {
    await call("Inspect", { id: created.id });
  } catch (err) {
    goneCode = grpc.status[err.code];
  }
  emit("done", { id: created.id, events: seen.length, ended_by: why,
    saw_removed: seen.includes("container.removed"), inspect_after_remove: goneCode });
  return seen.includes("container.removed") ? 0 : 1;
}

main()
  .then((code) => { client.close(); process.exitCode = code; })
  .catch((err) => {
    emit("error", { code: err.code !== undefined ? grpc.status[err.code] : null,
      details: err.details || String(err) });
    client.close();
    process.exitCode = 1;
  });
