"""Hash every file under a directory with pool.map, with a live progress bar.

    python examples/hash_files.py [directory]

Files are read lazily as the workers take them, four at a time per job, and
the results stream back in order while tqdm shows the progress (install it
with `pip install tqdm`). Without a directory, it hashes a tree it makes.
"""

import hashlib
import sys
import tempfile
from pathlib import Path

import trio
from tqdm import tqdm

import trio_pool


def sha256(path: Path) -> tuple[str, str]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest(), str(path)


def list_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def main(root: Path) -> None:
    files = await trio_pool.run_in_thread(list_files, root)  # walking a tree blocks
    digests: dict[str, str] = {}
    async with (
        trio_pool.Pool(workers=4) as pool,
        pool.map(sha256, files, chunksize=4) as results,
    ):
        with tqdm(total=results.total, unit="file", file=sys.stderr) as bar:
            async for digest, path in results:
                digests[path] = digest
                bar.update()
    combined = hashlib.sha256("".join(digests[p] for p in sorted(digests)).encode()).hexdigest()
    print(f"hashed {len(digests)} files; combined digest {combined[:16]}")


def make_tree(root: Path) -> None:
    for d in range(10):
        folder = root / f"dir{d}"
        folder.mkdir()
        for f in range(20):
            (folder / f"file{f}.bin").write_bytes(bytes([d, f]) * 50_000)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        trio.run(main, Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            make_tree(Path(tmp))
            trio.run(main, Path(tmp))
