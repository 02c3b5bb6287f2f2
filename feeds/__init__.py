"""Where data comes from (file readers, Kafka, memory) and where instructions go."""
