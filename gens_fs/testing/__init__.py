"""Test and benchmark infrastructure: an S3 server on loopback, a counting/faulting proxy,
and a synthetic store generator. Needs the ``test`` extra (moto)."""
