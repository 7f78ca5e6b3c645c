"""The .fzp container: primitives (bytes_io), header layout, file framing, object tree."""
