"""The upload part size every backend's SDK is given (its own module so that a backend
module need not import the `Destination` interface, which imports backends lazily)."""

# Upload in 8 MiB parts: memory stays bounded (s3fs reads a file under two parts whole,
# gcsfs reads whole anything under 5 MiB), and parts are retried cheaply by the SDKs.
PART_SIZE = 8 * 2**20
