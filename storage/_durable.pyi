from collections.abc import Sequence

def write_files(
    items: Sequence[tuple[bytes, bytes, bytes, bytes | memoryview]],
    fsync: bool,
    make_dirs: bool = ...,
    /,
) -> list[int]: ...
