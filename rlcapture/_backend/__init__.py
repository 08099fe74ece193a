"""Mechanism under the public face: shared memory, the frame ring, the channel
between producers and the encoder, the worker and encoder processes."""
