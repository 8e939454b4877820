"""Block stores: the Protocol and the embedded filestore-style ``FsBlockstore``."""

from pinner.blockstore.fs import FsBlockstore, FsBlockstoreConfig
from pinner.blockstore.protocol import Blockstore
from pinner.blockstore.writer import FileWriter

__all__ = ["Blockstore", "FileWriter", "FsBlockstore", "FsBlockstoreConfig"]
