"""What every pack's steps share: the pack registry, parallel maps, the preprocess skeleton."""
