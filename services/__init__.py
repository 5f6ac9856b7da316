"""The mtlab services, one process each (`python -m services.<name>`). Built from issue #3 on."""
