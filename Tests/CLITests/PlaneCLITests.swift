// cce4 dataset push / cce4 plane without a plane: help, usage errors, and failures that
// must happen before (or at) the first network call, each one line with its exit status.
// The push against a running plane is the integration test (docs/plane-client.md).
import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

@Suite("cce4 dataset push and cce4 plane (no plane)")
struct PlaneCLITests {
    var bin: String { Repo.binary("cce4") }

    @Test("help, usage errors, a FIFO refused before sign-in, an unreachable plane as one line (74)")
    func offline() throws {
        for cmd in [["dataset", "push", "--help"], ["plane", "--help"], ["plane", "login", "--help"], ["plane", "approve", "--help"], ["plane", "versions", "--help"]] {
            let r = try run(bin, cmd)
            #expect(r.status == 0, "\(cmd)")
            #expect(r.stdoutText.contains("USAGE"), "\(cmd)")
        }
        let dir = TempDir("cce4-push-cli")
        try writeFile(dir.sub("pw"), Array("hunter2\n".utf8))
        let ks = dir.sub("wallet.json")
        let w = try run(bin, ["wallet", "new", "--keystore", ks, "--password-file", dir.sub("pw"), "--kdf", "light"])
        #expect(w.status == 0, "\(w.stderr)")
        try writeFile(dir.sub("src/a.txt"), Array("a".utf8))
        let base = ["--plane", "http://127.0.0.1:9", "--wallet", ks, "--password-file", dir.sub("pw"), "-q"]

        let badID = try run(bin, ["dataset", "push", dir.sub("src"), "--dataset", "Bad/ID"] + base)
        #expect(badID.status == 64, "\(badID.stderr)")
        let missing = try run(bin, ["dataset", "push", dir.sub("nope"), "--dataset", "d1"] + base)
        #expect(missing.status == 66)
        #expect(missing.stderr == "cce4: error: \(dir.sub("nope")) is not a directory; pass the directory to push\n")

        let down = try run(bin, ["dataset", "push", dir.sub("src"), "--dataset", "d1"] + base)
        #expect(down.status == 74, "\(down.stderr)")
        #expect(down.stderr.hasPrefix("cce4: error: cannot issue a sign-in nonce at http://127.0.0.1:9:"))
        #expect(down.stderr.split(separator: "\n").count == 1)
        #expect(down.stdout.isEmpty)

        #expect(mkfifo(dir.sub("src/fifo"), 0o600) == 0)
        let fifo = try run(bin, ["dataset", "push", dir.sub("src"), "--dataset", "d1"] + base)
        #expect(fifo.status == 66, "\(fifo.stderr)")
        #expect(fifo.stderr.contains("only regular files, directories and symlinks can be pushed"))

        let login = try run(bin, ["plane", "login", "--plane", "ftp://x", "--wallet", ks, "--password-file", dir.sub("pw")])
        #expect(login.status == 64, "\(login.stderr)")
        let noPlane = try run(bin, ["plane", "versions", "--dataset", "d1"], environment: [:])
        #expect(noPlane.status == 64)
        #expect(noPlane.stderr.contains("--plane URL"))
    }
}

@Suite("cce4 dataset pack --tar")
struct PackTarCLITests {
    @Test("a GNU tar stream on stdin packs to the same tree as the directory; a hostile archive exits 65 in one line")
    func packTar() throws {
        let bin = Repo.binary("cce4")
        let dir = TempDir("cce4-pack-tar")
        try writeFile(dir.sub("src/a/b.txt"), Array("bee".utf8))
        try writeFile(dir.sub("src/c.bin"), [UInt8](repeating: 7, count: 70_000))
        #expect(try run(bin, ["key", "generate", "--insecure-key-file", dir.sub("key")]).status == 0)
        let store = "file://" + dir.sub("store")
        let tarFile = dir.sub("src.tar")
        #expect(try run("/usr/bin/tar", ["--format=posix", "-C", dir.sub("src"), "-cf", tarFile, "."]).status == 0)
        let p = try run(bin, ["dataset", "pack", "--tar", "-", "--store", store, "--dataset", "d", "--insecure-key-file", dir.sub("key")],
                        input: try Data(contentsOf: URL(fileURLWithPath: tarFile)))
        #expect(p.status == 0, "\(p.stderr)")
        let root = p.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let cat = try run(bin, ["dataset", "cat", "--store", store, "--dataset", "d", "--root", root, "--insecure-key-file", dir.sub("key"), "a/b.txt"])
        #expect(cat.status == 0 && cat.stdoutText == "bee", "\(cat.stderr)")
        // The same archive from a file argument.
        let f = try run(bin, ["dataset", "pack", "--tar", tarFile, "--store", store, "--dataset", "d", "--insecure-key-file", dir.sub("key")])
        #expect(f.status == 0, "\(f.stderr)")
        // Truncated (GNU tar pads to 10 KiB records, so cut in the middle): 65, one line, no file name in it.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: tarFile))
        let bad = try run(bin, ["dataset", "pack", "--tar", "-", "--store", store, "--dataset", "d", "--insecure-key-file", dir.sub("key")],
                          input: bytes.prefix(bytes.count / 2))
        #expect(bad.status == 65, "\(bad.stderr)")
        #expect(bad.stderr.hasPrefix("cce4: error: invalid tar archive at byte "))
        #expect(bad.stderr.split(separator: "\n").count == 1 && !bad.stderr.contains("b.txt"))
    }
}
