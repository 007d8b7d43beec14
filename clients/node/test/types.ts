// Type-checked by `npm run typecheck` (tsc --strict): the declarations describe a usable
// API. Never run.
import { SheepClient, status, type Container, type Event, type ServiceError } from "../index";

async function tour(): Promise<void> {
  const sheep = new SheepClient({ socket: "/run/sheep/sheep.sock", timeoutSeconds: 5 });
  const v = await sheep.version();
  const api: string = v.api_version;
  const c: Container = await sheep.createContainer({
    command: ["/bin/sleep", "30"], name: "web", network_mode: "none", cap_add: ["NET_ADMIN"],
  });
  const running: boolean = c.state === "RUNNING";
  const ip: string | undefined = c.networks[0]?.ip_address;
  const all: Container[] = await sheep.listContainers({ all: true });
  await sheep.createNetwork({ name: "backend", subnet: "10.30.0.0/24", icc: false });
  const att = await sheep.attachNetwork({ container_id: c.id, network: "backend",
    ports: [{ host_port: 8080, container_port: 80 }] });
  const leases: string = (await sheep.inspectNetwork("backend")).leases_allocated;
  const stream = sheep.watchEvents({ filters: { container: c.id }, since: new Date() });
  for await (const e of stream) {
    const ev: Event = e;
    if (ev.type === "container.removed") stream.cancel();
  }
  try {
    await sheep.inspect("ghost");
  } catch (err) {
    const notFound: boolean = (err as ServiceError).code === status.NOT_FOUND;
    void notFound;
  }
  const gone: string = await sheep.removeContainer(c.id, { force: true });
  sheep.close();
  void [api, running, ip, all, att, leases, gone];
}

void tour;
