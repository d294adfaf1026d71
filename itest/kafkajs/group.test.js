// KafkaJS consumer group against the copyscope broker. Run by
// itest/kafkajs_test.go, which starts the broker, produces TOPIC (4
// partitions, RECORDS records each, values "p<partition>-<i>-...") and
// sets the environment; FIRST is the offset the group must resume at.
'use strict';
const test = require('node:test');
const { Kafka, logLevel } = require('kafkajs');

const env = (name) => {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set: run this through go test in itest/`);
  return v;
};

test('a KafkaJS consumer group reads every record once, in partition order', async () => {
  const topic = env('TOPIC');
  const first = Number(env('FIRST'));
  const want = 4 * Number(env('RECORDS'));
  const kafka = new Kafka({ clientId: 'itest-kafkajs', brokers: [env('BROKER')], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: env('GROUP'), sessionTimeout: 6000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const next = new Map();
  let got = 0;
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${got} of ${want} records in 60 s`)), 60000);
      consumer.on(consumer.events.CRASH, (e) => {
        clearTimeout(timer);
        reject(e.payload.error);
      });
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          const n = next.has(partition) ? next.get(partition) : first;
          const prefix = `p${partition}-${n - first}-`;
          const value = message.value.toString();
          if (Number(message.offset) !== n || !value.startsWith(prefix)) {
            clearTimeout(timer);
            reject(new Error(`partition ${partition}: got ${value.slice(0, 20)} at offset ${message.offset}, want ${prefix}... at ${n}`));
            return;
          }
          next.set(partition, n + 1);
          if (++got === want) {
            clearTimeout(timer);
            resolve();
          }
        },
      }).catch(reject);
    });
  } finally {
    await consumer.disconnect(); // commits what was read
  }
});
