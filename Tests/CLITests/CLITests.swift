// The cce4 binary, run as a user would: exit statuses, messages, files it writes.
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

struct CLI {
    let dir = TempDir("cce4-cli")
    var bin: String { Repo.binary("cce4") }
    var keyFile: String { dir.sub("dataset.key") }
    var store: String { "file://" + dir.sub("store") }

    @discardableResult
    func cce4(_ args: String...) throws -> ProcessResult { try run(bin, args) }
    func cce4(_ args: [String]) throws -> ProcessResult { try run(bin, args) }

    func reader(_ root: String) -> [String] { ["--store", store, "--dataset", "ds", "--root", root, "--insecure-key-file", keyFile] }

    /// Makes a key and packs a small tree; returns the root hash.
    func packed() throws -> String {
        try writeFile(dir.sub("src/cohort/participants.csv"), Array("id,age\n1,71\n".utf8))
        var rng = SeededGenerator(seed: 1)
        try writeFile(dir.sub("src/omics/beta.bin"), rng.bytes(300_000))
        #expect(try cce4("key", "generate", "--insecure-key-file", keyFile).status == 0)
        let r = try cce4("dataset", "pack", dir.sub("src"), "--store", store, "--dataset", "ds", "--insecure-key-file", keyFile)
        try #require(r.status == 0, "pack failed: \(r.stderr)")
        let root = r.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(root.count == 64, "pack prints only the root hash: \(r.stdoutText)")
        #expect(r.stderr.isEmpty, "no progress output when stderr is not a terminal: \(r.stderr)")
        return root
    }
}

@Suite("cce4 command line")
struct CLITests {
    @Test("pack, ls, cat (whole and ranged), verify, versions")
    func happyPath() throws {
        let cli = CLI()
        let root = try cli.packed()
        let ls = try cli.cce4(["dataset", "ls", "-R"] + cli.reader(root))
        #expect(ls.status == 0)
        #expect(ls.stdoutText.split(separator: "\n") == ["cohort/", "cohort/participants.csv", "omics/", "omics/beta.bin"])
        let cat = try cli.cce4(["dataset", "cat", "cohort/participants.csv"] + cli.reader(root))
        #expect(cat.stdoutText == "id,age\n1,71\n")
        let beta = try readFile(cli.dir.sub("src/omics/beta.bin"))
        let whole = try cli.cce4(["dataset", "cat", "/omics/beta.bin"] + cli.reader(root))
        #expect(bytesEqual(Array(whole.stdout), beta))
        let part = try cli.cce4(["dataset", "cat", "omics/beta.bin", "--offset", "16000", "--length", "70000"] + cli.reader(root))
        #expect(bytesEqual(Array(part.stdout), Array(beta[16000..<86000])))
        let v = try cli.cce4(["dataset", "verify"] + cli.reader(root))
        #expect(v.status == 0 && v.stdoutText.hasPrefix("OK: 3 directories, 2 files"), "\(v.stdoutText)")
        let versions = try cli.cce4("dataset", "versions", "--store", cli.store, "--dataset", "ds")
        #expect(versions.stdoutText.hasPrefix(root))
    }

    @Test("verify on a tampered store names the bad object and exits 65")
    func verifyTampered() throws {
        let cli = CLI()
        let root = try cli.packed()
        // The largest object is beta.bin's stream.
        let objects = try FileManager.default.subpathsOfDirectory(atPath: cli.dir.sub("store/ds/objects")).map { cli.dir.sub("store/ds/objects/" + $0) }
        let biggest = try objects.filter { (try FileManager.default.attributesOfItem(atPath: $0)[.type] as? FileAttributeType) == .typeRegular }
            .max { (try readFile($0).count) < (try readFile($1).count) }!
        var bytes = try readFile(biggest)
        bytes[bytes.count / 2] ^= 0x01
        try writeFile(biggest, bytes)
        let objectKey = "ds/objects/" + biggest.split(separator: "/").suffix(2).joined(separator: "/")
        let v = try cli.cce4(["dataset", "verify"] + cli.reader(root))
        #expect(v.status == 65)
        #expect(v.stdoutText.contains("BAD \(objectKey)"), "\(v.stdoutText)")
        #expect(!v.stdoutText.contains("beta"), "no decrypted names without --show-names")
        let cat = try cli.cce4(["dataset", "cat", "omics/beta.bin"] + cli.reader(root))
        #expect(cat.status == 65 && cat.stderr.contains(objectKey))
        #expect(cat.stderr.contains("INCOMPLETE") || cat.stdout.isEmpty)
    }

    @Test("bad input: one actionable line and a documented exit status")
    func errors() throws {
        let cli = CLI()
        let root = try cli.packed()
        // Wrong root hash: refused before any I/O.
        let badRoot = try cli.cce4(["dataset", "ls"] + cli.reader("abc"))
        #expect(badRoot.status == 64 && badRoot.stderr.contains("--root must be 64 hex digits"))
        // A root the store does not hold.
        let missing = try cli.cce4(["dataset", "ls"] + cli.reader(String(repeating: "0", count: 64)))
        #expect(missing.status == 66 && missing.stderr.contains("not found"), "\(missing.stderr)")
        // Missing key file: says how to make one.
        var args = cli.reader(root); args[args.count - 1] = cli.dir.sub("nokey")
        let nokey = try cli.cce4(["dataset", "ls"] + args)
        #expect(nokey.status == 66 && nokey.stderr.contains("cce4 key generate"))
        // A key file others can read is refused, like ssh does.
        chmod(cli.keyFile, 0o644)
        let loose = try cli.cce4(["dataset", "ls"] + cli.reader(root))
        #expect(loose.status == 77 && loose.stderr.contains("chmod 600"))
        chmod(cli.keyFile, 0o600)
        // The wrong key: an integrity failure with a hint.
        let other = cli.dir.sub("other.key")
        try cli.cce4("key", "generate", "--insecure-key-file", other)
        args = cli.reader(root); args[args.count - 1] = other
        let wrong = try cli.cce4(["dataset", "verify"] + args)
        #expect(wrong.status == 65 && wrong.stdoutText.contains("check the key file"))
        // key generate never overwrites silently, and makes 0600 files.
        let again = try cli.cce4("key", "generate", "--insecure-key-file", cli.keyFile)
        #expect(again.status == 73 && again.stderr.contains("--force"))
        var st = stat()
        #expect(stat(cli.keyFile, &st) == 0 && st.st_mode & 0o777 == 0o600)
        // No key material in any message.
        let keyText = String(decoding: try readFile(cli.keyFile), as: UTF8.self).split(separator: " ").last!.prefix(16)
        for r in [badRoot, missing, nokey, loose, wrong, again] { #expect(!r.stderr.contains(keyText) && !r.stdoutText.contains(keyText)) }
        // Paths that are not files.
        #expect(try cli.cce4(["dataset", "cat", "cohort"] + cli.reader(root)).status == 64)
        #expect(try cli.cce4(["dataset", "cat", "nope.csv"] + cli.reader(root)).status == 66)
        // A FIFO in the source is refused by name.
        #expect(mkfifo(cli.dir.sub("src/pipe"), 0o644) == 0)
        let fifo = try cli.cce4("dataset", "pack", cli.dir.sub("src"), "--store", cli.store, "--dataset", "ds2", "--insecure-key-file", cli.keyFile)
        #expect(fifo.status == 66 && fifo.stderr.contains("FIFO"))
        // Options out of range.
        #expect(try cli.cce4("dataset", "pack", cli.dir.sub("src"), "--store", cli.store, "--dataset", "ds", "--insecure-key-file", cli.keyFile, "--part-size", "1000").status == 64)
        #expect(try cli.cce4("dataset", "pack", cli.dir.sub("src"), "--store", cli.store, "--dataset", "Bad ID!", "--insecure-key-file", cli.keyFile).status != 0)
        #expect(try cli.cce4("dataset", "pack", cli.dir.sub("src"), "--store", "s4://x", "--dataset", "ds", "--insecure-key-file", cli.keyFile).status == 64)
    }

    @Test("--help works on every command")
    func help() throws {
        let cli = CLI()
        for cmd in [[], ["key"], ["key", "generate"], ["dataset"], ["dataset", "pack"], ["dataset", "ls"], ["dataset", "cat"], ["dataset", "verify"], ["dataset", "versions"]] {
            let r = try cli.cce4(cmd + ["--help"])
            #expect(r.status == 0 && r.stdoutText.contains("USAGE"), "cce4 \(cmd.joined(separator: " ")) --help")
        }
    }
}
