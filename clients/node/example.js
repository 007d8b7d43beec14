#!/usr/bin/env node
// A complete @sheep/runtime-client program: create a container, inspect it, stream its
// events, remove it. Every step prints one JSON line ({"step": ...}).
//
//   SHEEP_SOCKET=/run/sheep/sheep.sock node example.js
//
// Environment:
//   SHEEP_SOCKET         the daemon's socket (default /run/sheep/sheep.sock)
//   SHEEP_NETWORK_MODE   "" (default network) or "none" (loopback only)
//   SHEEP_WATCH_SECONDS  how long to stream events at most (default 10)
//   SHEEP_LINGER_SECONDS how long to stream before removing the container (default 1)
"use strict";

const { SheepClient, status, PROTO_ROOT } = require("@sheep/runtime-client");

const networkMode = process.env.SHEEP_NETWORK_MODE || "";
const watchSeconds = Number(process.env.SHEEP_WATCH_SECONDS || "10");
const lingerSeconds = Number(process.env.SHEEP_LINGER_SECONDS || "1");

function emit(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

function containerFields(c) {
  return {
    id: c.id, name: c.name, state: c.state, pid: c.pid, command: c.command,
    networks: c.networks.map((n) => ({ network: n.network, ip_address: n.ip_address,
      interface_name: n.interface_name })),
    netns_path: c.netns_path,
  };
}

// Stream the container's events (replaying from `since`, so none is missed), remove the
// container `lingerSeconds` after it started, and resolve once the removal has been
// answered and its container.removed event has arrived, or after `seconds`.
function watchAndRemove(sheep, id, since, seconds) {
  return new Promise((resolve, reject) => {
    const seen = [];
    let removing = false;
    let removed = false;
    let finished = false;
    let lingering = null;
    const stream = sheep.watchEvents({ filters: { container: id }, since });
    const stop = () => {
      finished = true;
      clearTimeout(timer);
      clearTimeout(fallback);
      clearTimeout(lingering);
      stream.cancel();
    };
    const finish = (why) => { if (!finished) { stop(); resolve({ seen, why }); } };
    const fail = (err) => { if (!finished) { stop(); reject(err); } };
    const maybeDone = () => {
      if (removed && seen.includes("container.removed")) finish("removed");
    };
    const remove = () => {
      if (removing || finished) return;
      removing = true;
      sheep.removeContainer(id, { force: true })
        .then((rid) => { emit("remove", { id: rid }); removed = true; maybeDone(); })
        .catch(fail);
    };
    const timer = setTimeout(() => finish("timeout"), seconds * 1000);
    // If container.started were somehow not replayed, still remove after a while.
    const fallback = setTimeout(remove, Math.min(lingerSeconds + 2, seconds / 2) * 1000);
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
      if (finished && err.code === status.CANCELLED) return; // our own cancel
      fail(err);
    });
    stream.on("end", () => finish("end"));
  });
}

async function main(sheep) {
  emit("connect", { target: sheep.target, proto_root: PROTO_ROOT });
  const version = await sheep.version();
  emit("version", { version: version.version, api_version: version.api_version });

  const since = new Date(Date.now() - 1000); // a little slack for clock rounding
  const created = await sheep.createContainer({
    name: `node-${process.pid}`, command: ["/bin/sleep", "30"], network_mode: networkMode,
  });
  emit("create", containerFields(created));
  emit("inspect", containerFields(await sheep.inspect(created.id)));

  const { seen, why } = await watchAndRemove(sheep, created.id, since, watchSeconds);

  // Gone for good: inspecting it now is NOT_FOUND.
  let goneCode = null;
  try {
    await sheep.inspect(created.id);
  } catch (err) {
    goneCode = status[err.code];
  }
  emit("done", { id: created.id, events: seen.length, ended_by: why,
    saw_removed: seen.includes("container.removed"), inspect_after_remove: goneCode });
  return seen.includes("container.removed") ? 0 : 1;
}

const sheep = new SheepClient({ timeoutSeconds: 30 });
main(sheep)
  .then((code) => { sheep.close(); process.exitCode = code; })
  .catch((err) => {
    emit("error", { code: err.code !== undefined ? status[err.code] : null,
      details: err.details || String(err) });
    sheep.close();
    process.exitCode = 1;
  });
