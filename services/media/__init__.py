"""The media and file service: uploads in parts, content-addressed blobs, downloads by those who may (issue #6)."""
