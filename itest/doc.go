// Package itest holds integration tests (test files only) of the
// copyscope broker with Kafka client libraries the product does not
// depend on: IBM/sarama's consumer group and cluster admin,
// segmentio/kafka-go's group Reader, KafkaJS's consumer (kafkajs/, run
// with node; `npm ci` there installs it), and kcat -G against franz-go's
// kfake, side by side. It is its own module so that the product's go.mod
// stays lean; `make test` runs it.
package itest
