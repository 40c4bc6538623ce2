// TEMPORARY, until tandem-ha/client has createGrpcClient (wt-grpcnode): the registry's members
// through createClient, and a plain grpc-js client per instance, retrying UNAVAILABLE elsewhere.
import * as grpc from '@grpc/grpc-js';
import { createClient } from 'tandem-ha/client';

export function createGrpcClient(service, definition, { registry }) {
  const members = createClient(service, { registry, settings: { healthCheck: false } });
  const Client = grpc.makeGenericClientConstructor(definition, service);
  const clients = new Map();
  const clientFor = (address) => clients.get(address) ?? clients.set(address, new Client(address, grpc.credentials.createInsecure())).get(address);
  const call = (method) => (request, callback) => {
    const tried = new Set();
    const attempt = () => {
      const ready = members.snapshot().filter((e) => !tried.has(e.id));
      if (ready.length === 0) return callback({ code: grpc.status.UNAVAILABLE, details: `no instance of ${service}` });
      const address = ready[Math.floor(Math.random() * ready.length)].id;
      tried.add(address);
      clientFor(address)[method](request, { deadline: Date.now() + 5000 }, (err, reply) => (err?.code === grpc.status.UNAVAILABLE ? attempt() : callback(err, reply)));
    };
    // the first snapshot needs the registry's first answer
    members.request({ path: '/healthz' }).catch(() => {}).finally(attempt);
  };
  return { charge: call('Charge'), close: async () => { for (const c of clients.values()) c.close(); await members.close(); } };
}
