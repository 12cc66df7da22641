"""envd's file rules through the real e2b SDK: cwd, remove, modes, metadata, signed URLs."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from e2b import AsyncSandbox
from e2b.exceptions import InvalidArgumentException

from emulator.testing import EmulatorHandle
from tests.fixtures.emulator_sandboxes import SandboxFactory


async def test_a_relative_cwd_starts_at_the_users_home(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        await sbx.files.write("/home/user/work/sub/in-sub", "")
        await sbx.files.write("/home/user/work/in-work", "")
        assert (await sbx.commands.run("ls", cwd="work/sub")).stdout == "in-sub\n"
        assert (await sbx.commands.run("ls", cwd="~/work")).stdout == "in-work\nsub\n"
        assert (await sbx.commands.run("ls", cwd="work/../work")).stdout == "in-work\nsub\n"
        with pytest.raises(InvalidArgumentException, match="cwd '/home/user/nope' does not exist"):
            await sbx.commands.run("true", cwd="nope")
        with pytest.raises(InvalidArgumentException, match="cannot expand user-specific home"):
            await sbx.commands.run("true", cwd="~root/x")


async def test_removing_a_missing_path_is_no_error(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        await sbx.files.remove("/home/user/never-was")
        await sbx.files.remove("/tmp/never/was/either")
        await sbx.files.write("/tmp/once", "x")
        await sbx.files.remove("/tmp/once")
        await sbx.files.remove("/tmp/once")
        assert not await sbx.files.exists("/tmp/once")


async def test_mode_is_permission_bits_only(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx:
        await sbx.files.make_dir("/home/user/d")
        await sbx.files.write("/home/user/d/f", "x")
        await sbx.commands.run("cp /bin/true ~/d/suid && chmod 4755 ~/d/suid; ln -s d/f ~/link")
        d = await sbx.files.get_info("/home/user/d")
        assert (d.mode, d.permissions) == (0o755, "drwxr-xr-x")
        entries = {e.name: e for e in await sbx.files.list("/home/user/d")}
        assert (entries["f"].mode, entries["f"].permissions) == (0o644, "-rw-r--r--")
        assert (entries["suid"].mode, entries["suid"].permissions) == (
            0o755,
            "urwxr-xr-x",
        )  # Go: no "-" after a type letter
        tmp = await sbx.files.get_info("/tmp")
        assert (tmp.mode, tmp.permissions) == (0o777, "dtrwxrwxrwx")  # no sticky bit in mode
        link = await sbx.files.get_info("/home/user/link")
        assert link.type is not None and link.type.value == "symlink"
        assert (link.mode, link.permissions) == (0o644, "Lrwxrwxrwx")  # the target's bits
        assert link.symlink_target == "/home/user/d/f"


async def test_symlinks_resolve_inside_the_sandbox(
    new_sandbox: SandboxFactory, emulator_env: EmulatorHandle
) -> None:
    if not emulator_env.core.isolated:
        pytest.skip("the sandbox's own /tmp needs Linux namespaces (root)")
    async with new_sandbox() as sbx:
        await sbx.commands.run("echo mine > /tmp/target && ln -s /tmp/target ~/abs")
        info = await sbx.files.get_info("/home/user/abs")
        assert (info.symlink_target, info.size) == ("/tmp/target", len("/tmp/target"))
        assert await sbx.files.read("/home/user/abs") == "mine\n"  # the sandbox's /tmp
        await sbx.files.write("/home/user/abs", "through the link")
        assert (await sbx.commands.run("cat /tmp/target")).stdout == "through the link"


async def test_file_metadata_is_kept_replaced_and_dropped_as_envd_does(
    new_sandbox: SandboxFactory,
) -> None:
    async with new_sandbox() as sbx:
        written = await sbx.files.write("/home/user/m.txt", "v1", metadata={"Author": "ann"})
        assert written.metadata == {"author": "ann"}  # keys lowercased, read back
        assert (await sbx.files.get_info("/home/user/m.txt")).metadata == {"author": "ann"}
        [listed] = [e for e in await sbx.files.list("/home/user") if e.name == "m.txt"]
        assert listed.metadata == {"author": "ann"}
        # Stored as envd stores it: user.e2b.* extended attributes of the file.
        attrs = await sbx.commands.run(
            "python3 -c \"import os; print(os.getxattr('m.txt', 'user.e2b.author').decode())\""
        )
        assert attrs.stdout == "ann\n"
        # An overwrite replaces the whole set; none given clears it.
        await sbx.files.write("/home/user/m.txt", "v2", metadata={"purpose": "test"})
        assert (await sbx.files.get_info("/home/user/m.txt")).metadata == {"purpose": "test"}
        renamed = await sbx.files.rename("/home/user/m.txt", "/home/user/n.txt")
        assert renamed.metadata == {"purpose": "test"}  # it moves with the file
        await sbx.files.write("/home/user/n.txt", "v3")
        assert (await sbx.files.get_info("/home/user/n.txt")).metadata is None
        await sbx.files.write("/home/user/n.txt", "v4", metadata={"a": "1"})
        await sbx.files.remove("/home/user/n.txt")
        await sbx.files.write("/home/user/n.txt", "v5")
        assert (await sbx.files.get_info("/home/user/n.txt")).metadata is None
        many = await sbx.files.write_files(
            [{"path": "/tmp/x1", "data": "1"}, {"path": "/tmp/x2", "data": "2"}],
            metadata={"batch": "7"},
        )
        assert [w.metadata for w in many] == [{"batch": "7"}, {"batch": "7"}]
        with pytest.raises(InvalidArgumentException):
            await sbx.files.write("/tmp/bad", "x", metadata={"bad key": "v"})


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


async def test_signed_urls_work_with_plain_http(new_sandbox: SandboxFactory) -> None:
    async with new_sandbox() as sbx, httpx.AsyncClient() as http:
        await sbx.files.write("/home/user/shared.txt", "signed content")
        r = await http.get(sbx.download_url("/home/user/shared.txt"))
        assert (r.status_code, r.text) == (200, "signed content")
        r = await http.get(sbx.download_url("shared.txt", use_signature_expiration=60))
        assert (r.status_code, r.text) == (200, "signed content")

        url = sbx.upload_url("/home/user/uploaded.bin", use_signature_expiration=60)
        r = await http.post(url, files={"file": ("uploaded.bin", b"\x00bytes")})
        assert r.status_code == 200, r.text
        assert r.json()[0]["path"] == "/home/user/uploaded.bin"
        assert await sbx.files.read("/home/user/uploaded.bin", format="bytes") == b"\x00bytes"
        me = (await sbx.commands.run("id -un")).stdout.strip()  # `user` (with namespaces)
        assert (await sbx.files.get_info("/home/user/uploaded.bin")).owner == me

        # A URL for one path, operation or user is no good for another.
        download = sbx.download_url("/home/user/shared.txt")
        for bad in (
            _with_query(download, path="/home/user/uploaded.bin"),
            _with_query(download, username="root"),
            _with_query(download, signature="v1_forged"),
        ):
            r = await http.get(bad)
            assert (r.status_code, r.json()["message"]) == (401, "invalid signature"), bad
        r = await http.post(download, files={"file": ("x", b"x")})  # a read URL
        assert r.status_code == 401
        expired = sbx.download_url("/home/user/shared.txt", use_signature_expiration=-5)
        r = await http.get(expired)
        assert (r.status_code, r.json()["message"]) == (401, "signature is already expired")
        # A wrong token is refused even with a good signature, as envd does.
        r = await http.get(download, headers={"X-Access-Token": "wrong"})
        assert r.status_code == 401

        await sbx.pause()
        r = await http.get(download)
        assert r.status_code == 502  # paused: not found, as E2B's proxy answers
        await AsyncSandbox.connect(sbx.sandbox_id)
        assert (await http.get(download)).text == "signed content"
