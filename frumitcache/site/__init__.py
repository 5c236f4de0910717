"""The site control plane: membership, seeder election and the catalogue, as pure state
machines (time passed in) plus a thin trio driver; frames are msgpack signed with the site key."""
