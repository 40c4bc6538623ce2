// The shop's events: one bus per process, on the broker named in settings or in memory.
import * as events from 'tandem-ha/events';
import { createClient } from 'tandem-ha/client';
import { send, readJson } from './http.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { log, settings } from './settings.js';

/**
 * Connects to the configured broker; with none, a MemoryBus (see pushTo and acceptPushed). An
 * instance started while the broker is down (a deploy during its restart) waits for it — it
 * joins the registry only after this — and gives up after a minute (a wrong URL, say).
 */
export async function openBus() {
  const connect = () => {
    if (settings.nats) return events.NatsBus.connect({ servers: settings.nats });
    if (settings.rabbitmq) return events.RabbitMqBus.connect({ url: settings.rabbitmq });
    if (!events.KafkaBus) throw new Error('KAFKA_BROKERS is set but this tandem-ha has no KafkaBus');
    return events.KafkaBus.connect({ brokers: settings.kafka.split(',') });
  };
  if (!settings.nats && !settings.rabbitmq && !settings.kafka) return new events.MemoryBus();
  const deadline = Date.now() + 60_000;
  for (let delay = 250; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await connect();
    } catch (err) {
      if (Date.now() + delay > deadline) throw err;
      log({ msg: 'broker unreachable', error: err.message, text: `broker unreachable (${err.message}); trying again in ${delay} ms` });
      await sleep(delay);
    }
  }
}

/**
 * A memory bus lives in one process, so without a broker the publisher hands each message to
 * the consumer services itself: one subscription per consumer group, whose handler POSTs the
 * message to that service through tandem/client. A failed POST is a failed handler: the bus
 * retries it with backoff. The message id picks the instance (consistent hashing), so a
 * retried message meets the same instance's inbox. Nothing of this survives the publisher's
 * process: that is what a broker is for.
 */
export async function pushTo(bus, topic, services) {
  for (const service of services) {
    const client = createClient(service, {
      registry: settings.registry,
      settings: { balancer: 'consistent-hash', hash: { header: 'x-message-id' } },
    });
    await bus.subscribe(topic, service, async (message) => {
      const envelope = { ...message, attempt: undefined, redelivered: undefined }; // the message as published
      const res = await client.request({ method: 'POST', path: `/events/${topic}`, headers: { 'x-message-id': message.id }, body: envelope });
      if (res.status !== 202) throw new Error(`${service} answered ${res.status} to ${topic} ${message.id}`);
    }, { maxAttempts: 20, backoff: { initial: 100, max: 2_000 } });
  }
}

/**
 * The consumer's side of pushTo: a request handler that runs `handler` on a pushed message
 * through the inbox, and answers 202 once the effect is done — so a message whose instance died
 * first is pushed again (to the next instance on the ring).
 */
export function acceptPushed(group, handler, inbox) {
  return async (req, res) => {
    const envelope = await readJson(req);
    if (req.method !== 'POST' || !req.url.startsWith('/events/') || typeof envelope?.id !== 'string') {
      return send(res, 404, { error: 'POST /events/<topic> takes a pushed message' });
    }
    try {
      await inbox.once(group, envelope.id, (tx) => handler({ ...envelope, attempt: 1, redelivered: false }, tx));
      send(res, 202, { done: envelope.id });
    } catch (err) {
      send(res, 500, { error: err.message });
    }
  };
}
