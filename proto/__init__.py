"""Generated etcd protos live here (etcdserverpb/, mvccpb/, authpb/); never edit them by hand.

Regenerate them with the command in proto/README.md.
"""
