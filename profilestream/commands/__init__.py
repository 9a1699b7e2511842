"""The bodies of the commands (`profilestream.cli` only parses arguments and calls in): `report`."""
