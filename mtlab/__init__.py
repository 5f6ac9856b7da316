"""mtlab: the command line, the stack supervisor and the client SDK of the mtlab teaching backend."""
