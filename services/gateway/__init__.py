"""The MTProto gateway (DC entry), on trio. Not built yet (issue #3); its protocol core is `mtproto`."""
