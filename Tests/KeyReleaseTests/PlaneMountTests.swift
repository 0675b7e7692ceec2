// cce4fs's development path beside key release: `insecure_key_file=` still mounts, and warns.
// (Mounts through the real Privacy Plane are in Tests/PlaneTests/KeyReleaseMountTests.swift.)
import Envelope
import Foundation
import Testing
import TestSupport

@Suite("cce4fs insecure_key_file= (real FUSE mount)")
struct InsecureKeyFileMountTests {
    @Test("insecure_key_file= still mounts, with a warning once the mount is live")
    func insecureKeyFileWarns() throws {
        let dir = TempDir("cce4-insecure-mount")
        try writeFile(dir.sub("src/README.txt"), Array("trial data\n".utf8))
        try writeFile(dir.sub("key"), InsecureKeyFile.encode(try SecureBytes.random(count: 32)))
        chmod(dir.sub("key"), 0o600)
        let store = "file://" + dir.sub("store")
        let root = try packWithCLI(source: dir.sub("src"), store: store, dataset: "trial", keyFile: dir.sub("key"))
        let mp = dir.sub("mnt")
        try FileManager.default.createDirectory(atPath: mp, withIntermediateDirectories: true)
        let r = try run(Repo.binary("cce4fs"), [store, mp, "-o", "dataset=trial,root=\(root),insecure_key_file=\(dir.sub("key"))"])
        #expect(r.status == 0, "\(r.stderr)")
        guard r.status == 0 else { return }
        defer { if (try? run("/bin/umount", [mp]))?.status != 0 { _ = try? run("/bin/umount", ["-l", mp]) } }
        #expect(r.stderr.contains("WARNING: insecure_key_file="))
        #expect(try readFile(mp + "/README.txt") == Array("trial data\n".utf8))
    }
}
