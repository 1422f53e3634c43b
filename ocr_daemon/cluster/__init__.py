"""The scale-out over NATS JetStream: the only package that imports nats. Empty on purpose:
importing a module below is what pulls nats in."""
