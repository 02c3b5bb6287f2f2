#!/bin/sh
# Create the agent's topics (DESIGN.md section 5); idempotent. Used by the topic-init job.
set -eu
BOOTSTRAP="${BOOTSTRAP:-kafka:9092}"
KT=/opt/kafka/bin/kafka-topics.sh
for t in md.mbp10 md.mbp10.dlq exec.parent-orders exec.parent-orders.dlq exec.child-orders exec.fills exec.fills.dlq; do
    "$KT" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$t" --partitions 1 --replication-factor 1
done
"$KT" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic exec.agent-state \
    --partitions 1 --replication-factor 1 --config cleanup.policy=compact
"$KT" --bootstrap-server "$BOOTSTRAP" --list
