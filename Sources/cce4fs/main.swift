// cce4fs SOURCE MOUNTPOINT [-o OPTIONS] [-f] [-d]: mount an encrypted dataset read-only.
// The shape mount.fuse3 expects, so `mount -t fuse.cce4fs` and /etc/fstab lines work.
import Dataset
import Envelope
import Filesystem
import Foundation
import Logging
import ObjectStore
#if canImport(Glibc)
import Glibc
#endif

let usage = """
usage: cce4fs SOURCE MOUNTPOINT -o dataset=ID,root=HASH,plane=URL,credential=FILE,attest=tsm|simulated,
                                   plane_identity=0xADDRESS[,OPTIONS] [-f] [-d]
       cce4fs SOURCE MOUNTPOINT -o dataset=ID,root=HASH,insecure_key_file=PATH[,OPTIONS] [-f] [-d]

Mounts one version of an encrypted cce4long dataset as a read-only POSIX filesystem. The key
comes from the Privacy Plane by attested key release (docs/key-release.md), or, for tests and
demos only, from a local key file.

  SOURCE                 the store URL holding the dataset: file:///srv/cce4-store or
                         s3://BUCKET/PREFIX (credentials: AWS_ACCESS_KEY_ID and
                         AWS_SECRET_ACCESS_KEY [+ AWS_SESSION_TOKEN], else the profile of
                         ~/.aws/credentials; region AWS_REGION; endpoint AWS_ENDPOINT_URL)
  MOUNTPOINT             an existing, empty directory

Options (-o, comma-separated; may be repeated):
  dataset=ID             the dataset id (required)
  root=HASH              the version: its 64-hex-digit root hash, as 'cce4 dataset pack'
                         printed it and the ledger records it (required)
  plane=URL              the Privacy Plane (https://; http:// only on loopback) that releases
                         the key to this attested VM; then credential=, attest= and
                         plane_identity= are required
  credential=FILE        the Job Credential (`cce4 job credential`) naming dataset= at root=
  attest=tsm|simulated   evidence from configfs-tsm (a TDX or SEV-SNP guest), or simulated
                         evidence (development; the plane must allow it)
  plane_identity=0xADDR  the plane identity's address: its lease signatures are checked
  lease_ttl=SECONDS      renew and lapse on a lease no longer than this (default: the plane's)
  sim_key=PATH           attest=simulated: the key file of `cce4 attest simulate --key-file`
                         (default: a fresh key)
  plane_ca_file=PATH     PEM CA bundle to trust for the plane (default: the system's)
  insecure_key_file=PATH the dataset key file, mode 0600: tests and demos only, with a
                         warning on every mount (instead of plane=)
  allow_other            let users other than the mounting one see the files
                         (non-root users need user_allow_other in /etc/fuse.conf)
  allow_root             let root see the files
  uid=N, gid=N           owner and group reported for every file (default: the mounting user)
  umask=OCTAL            permission bits to clear (default: 022)
  threads=N              FUSE worker threads (default: 16)
  uring=off|on|auto      FUSE over io_uring (Linux 6.14+ with fuse.enable_uring=1): requests
                         come on the kernel's per-CPU rings, served by threads pinned to each
                         CPU, with no read/write of /dev/fuse per request (threads=N are
                         shared among the CPUs). on refuses to mount if the kernel does not
                         allow it, auto falls back to /dev/fuse (default: off)
  spin=MICROSECONDS      the longest a thread that served a request polls for the next one
                         before it sleeps (default: 50; at most 10000; 0: libfuse's loop).
                         Without uring=on, cce4fs's own /dev/fuse loop: one thread reads
                         requests, answers those it can from memory, keeps the lead through
                         store reads unless requests come concurrently, and polls for an
                         adaptive time (none on an idle mount). Against libfuse's loop: a
                         serial stat() walk about 1.4x faster, 1-thread random reads about
                         1.8x. With uring=on each ring thread polls for the full time
  cache_size=SIZE        memory for decoded directory listings, e.g. 256M or 1G (default: 64M);
                         file data is cached by the kernel's page cache
  read_ahead_kb=N        the kernel's readahead window for this mount, in KiB (default: 1024,
                         so sequential reads arrive as 1 MiB requests; 0 keeps the kernel's
                         128); needs root (it is set through /sys/class/bdi)
  segment_fill=0|1       a read that covers only part of the 16 KiB segments it decrypts
                         also puts their other whole pages into the page cache, so nearby
                         reads need no round trip (default: 1)
  open_fill=SIZE         files of at most SIZE are decrypted whole when first opened and put
                         into the page cache before open returns, so reading them needs no
                         round trip (default: 128K; 0 turns it off; at most 1M)
  prefetch=SIZE          once 8 files of one directory have been opened, the store objects
                         of its other files of at most 1 MiB are fetched ahead in the
                         background (file://: into the kernel's page cache; s3://: their
                         opening GETs, into the block cache), up to SIZE per directory
                         (default: 1G; 0 turns it off). Ciphertext only; the lease is checked
                         before each batch
  attr_timeout=SECONDS   how long the kernel caches attributes and names (default: 86400;
                         the version never changes)
  log_level=LEVEL        trace, debug, info, notice, warning (default), error, critical
  fsname=NAME            the name shown by mount and df (default: cce4fs:DATASET)
  noexec, noatime       passed to the kernel mount

file:// options:
  file_readahead=SIZE    a sequential stream of large reads of one store object keeps the
                         kernel reading this far ahead of it (POSIX_FADV_WILLNEED, topped up
                         every half window; default: 64M; 0 leaves it to the kernel's own
                         readahead of the store's disk)

s3:// options (defaults from the AWS_* variables, then as shown):
  s3_endpoint=URL        https://host[:port] of an S3-compatible service (default: AWS's
                         endpoint of the region); http:// only for local test servers
  s3_region=NAME         the signing region (default: us-east-1)
  s3_profile=NAME        profile of the shared credentials file (default: default)
  s3_credentials_file=PATH  the shared credentials file (default: ~/.aws/credentials)
  s3_addressing=STYLE    path or virtual (default: virtual on AWS, path with s3_endpoint)
  s3_ca_file=PATH        PEM CA bundle to trust (default: the system's; checks are always on)
  s3_connect_timeout=S   seconds to connect (default: 5)
  s3_stall_timeout=S     a transfer below 1 KiB/s for this long is retried (default: 10)
  s3_retries=N           attempts per request, with exponential backoff (default: 6)
  s3_retry_time=S        stop retrying a request after this many seconds (default: 30)
  s3_block_size=SIZE     reads are fetched and cached in blocks of this size (default: 1M;
                         0 turns the block cache and readahead off)
  s3_cache_memory=SIZE   memory for cached and in-flight ciphertext blocks (default: 128M)
  s3_readahead=SIZE      the largest readahead window; it starts at one block on sequential
                         reads and doubles (default: 16M)
  s3_disk_cache=DIR      also keep ciphertext blocks on disk in DIR (created 0700), checked
                         against each object's ETag (default: none)
  s3_disk_cache_size=SIZE  the disk cache's limit, least recently used blocks go first
                         (default: 1G)
  Also accepted and ignored, for mount(8) and fstab: rw, ro, defaults, dev, nodev, suid,
  nosuid, exec, auto, noauto, user, nouser, users, atime, relatime, async, sync, nofail,
  _netdev, default_permissions, comment=, x-*. The mount is always read-only, nosuid, nodev.

Flags:
  -f                     stay in the foreground (logs to stderr); without it, cce4fs returns
                         once the mount is live (or has failed) and logs to syslog
  -d                     debug: log every request (implies -f)
  -h, --help             this help
  -V, --version          the version

Unmount with 'umount MOUNTPOINT' or 'fusermount3 -u MOUNTPOINT' (or SIGINT/SIGTERM in -f).

Exit status: 0 mounted (or unmounted cleanly in -f); 64 bad usage; 65 integrity failure (wrong
key, tampered root, wrong root hash; a tampered wrapped key or a lease not signed by
plane_identity); 66 missing store, key file, credential or version; 69 the plane or the TEE
unreachable; 77 permission problem, or the plane refused the key release (its reason is
printed); 1 the mount itself failed.

Once a plane lease lapses (the rental ended or expired, or renewals failed until expiry),
every open and read fails with EACCES and the key is wiped; remount to continue.
"""

struct Failure: Error { let message: String; let status: Int32 }

func fail(_ message: String, _ status: Int32) -> Never {
    writeStandardError("cce4fs: error: \(message)\n")
    exit(status)
}

struct Config {
    var source = ""
    var mountpoint = ""
    var dataset: String?
    var root: String?
    var keyFile: String?
    var foreground = false
    var debug = false
    var allowOther = false
    var allowRoot = false
    var fsOptions = FSOptions()
    var threads = 16
    var spinMicroseconds = FuseSession.defaultSpinMicroseconds
    var uring = FuseSession.UringMode.off
    var cacheBytes = 64 << 20
    /// The kernel readahead window for this mount (its bdi), in KiB; 0 leaves the kernel's.
    var readAheadKB = 1024
    var segmentFill = true
    var openFillMax = 128 << 10
    var fileReadahead = FileObjectStore.defaultReadahead
    var logLevel: Logger.Level = .warning
    var fsname: String?
    /// Kernel mount flags passed through to libfuse.
    var kernelFlags: [String] = []
    var s3 = S3Options()
    var plane = PlaneOptions()
}

func parse(_ args: [String]) throws -> Config {
    var c = Config()
    var positional = [String]()
    var i = 0
    let ignored: Set<String> = ["rw", "ro", "defaults", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto", "noauto",
                                "user", "nouser", "users", "atime", "relatime", "strictatime", "async", "sync",
                                "nofail", "_netdev", "default_permissions", "diratime", "lazytime", "silent", "loud"]
    func option(_ o: String) throws {
        let kv = o.split(separator: "=", maxSplits: 1).map(String.init)
        let k = kv[0], v = kv.count > 1 ? kv[1] : nil
        func value() throws -> String {
            guard let v, !v.isEmpty else { throw Failure(message: "option '\(k)' needs a value (\(k)=...)", status: ExitStatus.usage) }
            return v
        }
        func number(_ radix: Int = 10) throws -> UInt32 {
            guard let n = UInt32(try value(), radix: radix) else { throw Failure(message: "option '\(k)=\(v ?? "")' is not a number", status: ExitStatus.usage) }
            return n
        }
        switch k {
        case "dataset": c.dataset = try value()
        case "root": c.root = try value()
        case "insecure_key_file": c.keyFile = try value()
        case "plane": c.plane.url = try value()
        case "credential": c.plane.credential = try value()
        case "attest": c.plane.attest = try value()
        case "plane_identity": c.plane.identity = try value()
        case "sim_key": c.plane.simulatedKeyFile = try value()
        case "plane_ca_file": c.plane.caFile = try value()
        case "lease_ttl":
            guard let t = UInt64(try value()), t >= 1 else { throw Failure(message: "lease_ttl must be a positive number of seconds", status: ExitStatus.usage) }
            c.plane.leaseTTL = t
        case "allow_other": c.allowOther = true
        case "allow_root": c.allowRoot = true
        case "uid": c.fsOptions.uid = try number()
        case "gid": c.fsOptions.gid = try number()
        case "umask":
            let m = try number(8)
            guard m <= 0o7777 else { throw Failure(message: "umask=\(v ?? "") is not an octal mode", status: ExitStatus.usage) }
            c.fsOptions.umask = UInt16(m)
        case "spin":
            guard let n = UInt32(try value()), n <= 10_000 else { throw Failure(message: "spin must be 0...10000 microseconds (0: libfuse's loop), as in spin=50", status: ExitStatus.usage) }
            c.spinMicroseconds = Int(n)
        case "uring":
            guard let m = FuseSession.UringMode(rawValue: try value()) else { throw Failure(message: "uring must be auto, on or off, as in uring=off", status: ExitStatus.usage) }
            c.uring = m
        case "threads":
            let n = try number()
            guard (1...256).contains(n) else { throw Failure(message: "threads must be 1...256", status: ExitStatus.usage) }
            c.threads = Int(n)
        case "read_ahead_kb":
            let n = try number()
            guard n <= 65536 else { throw Failure(message: "read_ahead_kb must be 0...65536", status: ExitStatus.usage) }
            c.readAheadKB = Int(n)
        case "segment_fill":
            switch try value() {
            case "1", "true", "yes": c.segmentFill = true
            case "0", "false", "no": c.segmentFill = false
            default: throw Failure(message: "segment_fill must be 0 or 1", status: ExitStatus.usage)
            }
        case "open_fill":
            guard let n = parseSize(try value()), n >= 0, n <= 1 << 20 else { throw Failure(message: "open_fill must be a size of at most 1M (0 turns it off), as in open_fill=64K", status: ExitStatus.usage) }
            c.openFillMax = n
        case "file_readahead":
            let text = try value()
            guard let n = text == "0" ? 0 : parseSize(text), n >= 0, n <= 1 << 32 else { throw Failure(message: "file_readahead must be a size of at most 4G (0 leaves readahead to the kernel), as in file_readahead=64M", status: ExitStatus.usage) }
            c.fileReadahead = Int64(n)
        case "prefetch":
            let text = try value()
            guard let n = text == "0" ? 0 : parseSize(text), n >= 0, n <= 1 << 40 else { throw Failure(message: "prefetch must be a size (0 turns it off), as in prefetch=1G", status: ExitStatus.usage) }
            c.fsOptions.prefetch.bytes = Int64(n)
        case "cache_size":
            guard let n = parseSize(try value()), n >= 1 << 20 else { throw Failure(message: "cache_size must be a size of at least 1M, as in cache_size=256M", status: ExitStatus.usage) }
            c.cacheBytes = n
        case "attr_timeout":
            guard let t = Double(try value()), t >= 0 else { throw Failure(message: "attr_timeout must be a number of seconds", status: ExitStatus.usage) }
            c.fsOptions.attrTimeout = t; c.fsOptions.entryTimeout = t
        case "log_level":
            guard let l = Logger.Level(rawValue: try value()) else { throw Failure(message: "log_level must be one of trace, debug, info, notice, warning, error, critical", status: ExitStatus.usage) }
            c.logLevel = l
        case "fsname": c.fsname = try value()
        case "noexec", "noatime", "nodiratime": c.kernelFlags.append(k)
        case "subtype": break
        case "s3_endpoint": c.s3.endpoint = try value()
        case "s3_region": c.s3.region = try value()
        case "s3_profile": c.s3.profile = try value()
        case "s3_credentials_file": c.s3.credentialsFile = try value()
        case "s3_ca_file": c.s3.caFile = try value()
        case "s3_addressing":
            guard let a = S3Addressing(rawValue: try value()) else { throw Failure(message: "s3_addressing must be path or virtual", status: ExitStatus.usage) }
            c.s3.addressing = a
        case "s3_connect_timeout", "s3_stall_timeout", "s3_retry_time":
            guard let t = Double(try value()), t > 0, t <= 3600 else { throw Failure(message: "\(k) must be a number of seconds, 0 < \(k) <= 3600", status: ExitStatus.usage) }
            if k == "s3_connect_timeout" { c.s3.connectTimeout = t } else if k == "s3_stall_timeout" { c.s3.stallTimeout = t } else { c.s3.retryTime = t }
        case "s3_block_size", "s3_cache_memory", "s3_readahead", "s3_disk_cache_size":
            let text = try value()
            guard let n = text == "0" ? 0 : parseSize(text), n >= 0, n <= 1 << 40 else { throw Failure(message: "\(k) must be a size, as in \(k)=64M", status: ExitStatus.usage) }
            switch k {
            case "s3_block_size":
                guard n == 0 || (4096...(64 << 20)).contains(n) else { throw Failure(message: "s3_block_size must be 0 or 4K...64M", status: ExitStatus.usage) }
                c.s3.blockSize = n
            case "s3_cache_memory": c.s3.cacheMemory = n
            case "s3_readahead": c.s3.readaheadMax = n
            default: c.s3.diskCacheLimit = Int64(n)
            }
        case "s3_disk_cache": c.s3.diskCacheDirectory = try value()
        case "s3_retries":
            let n = try number()
            guard (1...100).contains(n) else { throw Failure(message: "s3_retries must be 1...100", status: ExitStatus.usage) }
            c.s3.maxAttempts = Int(n)
        default:
            if ignored.contains(k) || k.hasPrefix("x-") || k == "comment" { break }
            throw Failure(message: "unknown option '\(k)'; see 'cce4fs --help'", status: ExitStatus.usage)
        }
    }
    while i < args.count {
        let a = args[i]
        switch a {
        case "-h", "--help": print(usage); exit(0)
        case "-V", "--version": print("cce4fs 0.1.0"); exit(0)
        case "-f": c.foreground = true
        case "-d": c.debug = true; c.foreground = true
        case "-s": break  // single-threaded: accepted for compatibility, ignored
        case "-o":
            i += 1
            guard i < args.count else { throw Failure(message: "-o needs options", status: ExitStatus.usage) }
            for o in args[i].split(separator: ",") where !o.isEmpty { try option(String(o)) }
        default:
            if a.hasPrefix("-o") && a.count > 2 {
                for o in a.dropFirst(2).split(separator: ",") where !o.isEmpty { try option(String(o)) }
            } else if a.hasPrefix("-") {
                throw Failure(message: "unknown flag '\(a)'; see 'cce4fs --help'", status: ExitStatus.usage)
            } else {
                positional.append(a)
            }
        }
        i += 1
    }
    guard positional.count == 2 else { throw Failure(message: "expected SOURCE and MOUNTPOINT; see 'cce4fs --help'", status: ExitStatus.usage) }
    c.source = positional[0]
    c.mountpoint = positional[1]
    if c.debug { c.logLevel = .debug }
    if c.uring == .on, let why = FuseSession.uringUnavailable {
        throw Failure(message: "uring=on: \(why); or mount with uring=auto or uring=off", status: ExitStatus.usage)
    }
    return c
}

/// "1048576", "64K", "256M", "2G" → bytes.
func parseSize(_ text: String) -> Int? {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    if let u = text.last.flatMap({ units[Character($0.uppercased())] }), let n = Int(text.dropLast()), n >= 0, n <= Int.max / u { return n * u }
    return Int(text)
}

/// In the background, the parent re-runs this program in the foreground with a pipe and
/// waits: one byte means the mount is live; end-of-file means the child failed (it has
/// already printed why on the shared stderr) and its exit status is passed on.
func spawnBackground() -> Never {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { fail("pipe: \(String(cString: strerror(errno)))", 1) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    // POSIX_SPAWN_SETSID (glibc, 0x80) is hidden behind _GNU_SOURCE in the imported header.
    posix_spawnattr_setflags(&attr, Int16(0x80))
    let args = CommandLine.arguments + ["-f"]
    var env = ProcessInfo.processInfo.environment
    env["CCE4FS_READY_FD"] = String(fds[1])
    let cargs = args.map { strdup($0) } + [nil]
    let cenv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    var pid: pid_t = 0
    // Spawn the real path (not /proc/self/exe) so the daemon is named cce4fs in ps and logs.
    var exe = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let len = readlink("/proc/self/exe", &exe, Int(PATH_MAX))
    let path = len > 0 ? String(decoding: exe[0..<len].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "/proc/self/exe"
    let rc = posix_spawn(&pid, path, &actions, &attr, cargs, cenv)
    guard rc == 0 else { fail("cannot start the background process: \(String(cString: strerror(rc)))", 1) }
    close(fds[1])
    var byte: UInt8 = 0
    let n = read(fds[0], &byte, 1)
    if n == 1 { exit(0) }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 1
    exit(code == 0 ? 1 : code)
}

/// Closes every descriptor above 2 but `keep` (listed from /proc/self/fd).
func closeInheritedDescriptors(except keep: Int32) {
    guard let dir = opendir("/proc/self/fd") else { return }
    var fds = [Int32]()
    while let ent = readdir(dir) {
        let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let fd = Int32(name), fd > 2, fd != keep { fds.append(fd) }
    }
    let own = dirfd(dir)
    closedir(dir)
    for fd in fds where fd != own { close(fd) }
}

/// The "major:minor" of the filesystem mounted at `mountpoint`, from /proc/self/mountinfo
/// (which names it without touching the mount).
func mountDevice(_ mountpoint: String) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return nil }
    // Fields: id parent major:minor root mountpoint ...; spaces in paths are written \040.
    let escaped = mountpoint.replacingOccurrences(of: "\\", with: "\\134").replacingOccurrences(of: " ", with: "\\040")
    for line in text.split(separator: "\n").reversed() {
        let f = line.split(separator: " ")
        if f.count > 4, f[4] == escaped { return String(f[2]) }
    }
    return nil
}

/// The signals that end the mount.
func stopSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
    return set
}

// MARK: main


let config: Config
do { config = try parse(Array(CommandLine.arguments.dropFirst())) } catch let f as Failure { fail(f.message, f.status) }

let readyFD = ProcessInfo.processInfo.environment["CCE4FS_READY_FD"].flatMap { Int32($0) }
if !config.foreground && readyFD == nil { spawnBackground() }

// libfuse's loop wakes only if the thread running it receives the stop signal; a runtime
// thread could take it instead and the unmount would never happen. So block the signals
// before any thread exists (new threads inherit the mask) and unblock them only on the
// thread that runs the loop, just before it does. (Not before spawnBackground: its parent
// must stay interruptible while it waits for the mount.)
var blocked = stopSignals()
pthread_sigmask(SIG_BLOCK, &blocked, nil)
if let keep = readyFD {
    // A daemon must not hold descriptors it inherited (a caller's output pipe, say): the
    // caller would wait for an end-of-file that never comes. Keep stdio and the ready pipe.
    closeInheritedDescriptors(except: keep)
}

let level = config.logLevel
LoggingSystem.bootstrap { FSLogHandler(label: $0, level: level) }
let logger = Logger(label: "cce4fs")

guard let dataset = config.dataset, let rootHex = config.root, config.keyFile != nil || config.plane.isSet else {
    fail("dataset=, root= and either plane=URL,credential=FILE,attest=tsm|simulated,plane_identity=0xADDRESS or insecure_key_file= are required", ExitStatus.usage)
}
if config.keyFile != nil && config.plane.isSet { fail("use plane= or insecure_key_file=, not both", ExitStatus.usage) }
guard let root = try? SHA256Digest(hex: rootHex) else { fail("root= must be the 64-hex-digit root hash that 'cce4 dataset pack' printed", ExitStatus.usage) }
var st = stat()
guard stat(config.mountpoint, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
    fail("mount point \(config.mountpoint) is not an existing directory; create it first (mkdir -p \(config.mountpoint))", ExitStatus.noInput)
}

// The key: released by the plane to this attested VM (before anything is mounted), or read
// from a local file (tests and demos, loudly).
var plane: PlaneMount? = nil
let key: SecureBytes
if let keyPath = config.keyFile {
    do { key = try KeyFiles.load(keyPath) } catch { fail("\(error)", ExitStatus.of(error)) }
} else {
    let released = PlaneMount.release(config.plane, dataset: dataset, root: root, logger: logger)
    key = released.key
    plane = released.mount
}

let fs: DatasetFS
do {
    let store = try ObjectStores.open(url: config.source, s3: config.s3, fileReadahead: config.fileReadahead)
    let reader = try DatasetReader(store: store, datasetID: dataset, root: root, key: key, directoryCacheBytes: config.cacheBytes,
                                   willFetch: { FuseSession.willBlock() })
    fs = try DatasetFS(reader: reader, options: config.fsOptions, gate: plane?.gate, accessLog: plane?.log)
} catch {
    let hint: String
    switch error {
    case DatasetError.integrity:
        hint = "; the dataset version does not open: check the key file, dataset= and root= (a wrong key looks exactly like tampering)"
    case DatasetError.store(let e) where e.code == .notFound:
        hint = "; check SOURCE, dataset= and root="
    default:
        hint = ""
    }
    fail("\(error)\(hint)", ExitStatus.of(error))
}

var fuseOptions = ["ro", "default_permissions", "fsname=\(config.fsname ?? "cce4fs:" + dataset)", "subtype=cce4fs"] + config.kernelFlags
if config.allowOther { fuseOptions.append("allow_other") }
if config.allowRoot { fuseOptions.append("allow_root") }
var fuseArgs = ["-o", fuseOptions.joined(separator: ",")]
if config.debug { fuseArgs.append("-d") }

// Absolute, because the background daemon leaves the caller's directory (chdir "/") and
// libfuse unmounts by this path.
var resolved = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
let mountpoint = realpath(config.mountpoint, &resolved) != nil
    ? String(decoding: resolved.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : config.mountpoint

let session = FuseSession(fs: fs, logger: logger)
session.segmentFill = config.segmentFill
session.openFillMax = config.openFillMax
session.spinMicroseconds = config.spinMicroseconds
session.uring = config.uring
// A lapsed lease also drops the kernel's cached pages, so descriptors opened before the
// lapse read through the gate too (from a thread of its own: the lapse may be noticed inside
// a request handler).
plane?.gate.onLapse { Thread.detachNewThread { session.invalidateKernelCaches() } }
do {
    try session.mount(at: mountpoint, args: fuseArgs)
} catch {
    session.close()
    fail("\(error.cause)", 1)
}
plane?.startRenewal()
if config.keyFile != nil {
    // Once the mount is live (a failed mount keeps its one-line error), on every mount.
    writeStandardError("cce4fs: WARNING: insecure_key_file= read the dataset key from a local file: for tests and demos only; production mounts use plane= (attested key release)\n")
}
logger.info("mounted", metadata: ["dataset": "\(dataset)", "root": "\(rootHex)", "mountpoint": "\(mountpoint)", "store": "\(config.source)"])

if let fd = readyFD {
    // Tell the waiting parent the mount is live, then detach from the terminal.
    var one: UInt8 = 1
    _ = write(fd, &one, 1)
    close(fd)
    LogDestination.switchToSyslog(ident: "cce4fs")
    let devnull = open("/dev/null", O_RDWR)
    if devnull >= 0 { dup2(devnull, 0); dup2(devnull, 1); dup2(devnull, 2); if devnull > 2 { close(devnull) } }
    _ = chdir("/")
}

if config.readAheadKB > 0, let device = mountDevice(mountpoint) {
    // The kernel sets the mount's readahead window when it processes the INIT reply (at most
    // 128 KiB), so raise it from another thread once the loop below has handled INIT. The
    // thread never touches the mount itself (no stat): a path walk into it would wait for
    // INIT while pinning the mount, and an early umount would fail with EBUSY.
    let kb = config.readAheadKB, log = logger, initialized = session.initialized
    Thread.detachNewThread {
        guard initialized.wait(timeout: .now() + 30) == .success else { return }
        usleep(20_000)  // the INIT reply is written right after the init callback returns
        let path = "/sys/class/bdi/\(device)/read_ahead_kb"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { log.notice("cannot set read_ahead_kb (not root?)", metadata: ["path": "\(path)"]); return }
        let text = Array("\(kb)\n".utf8)
        let n = text.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
        close(fd)
        log.info("readahead window set", metadata: ["read_ahead_kb": "\(kb)", "ok": "\(n == text.count)"])
    }
}

pthread_sigmask(SIG_UNBLOCK, &blocked, nil)
let rc = session.run(threads: config.threads)
session.close()
logger.info("unmounted", metadata: ["mountpoint": "\(mountpoint)"])
plane?.finish()
// The loop returns 0 after umount, the signal number after SIGINT/SIGTERM/SIGHUP (a clean
// unmount too; cce4fs's own loop, spin=, returns 0 then), and a negative errno on failure.
exit(rc == 0 || rc == SIGINT || rc == SIGTERM || rc == SIGHUP ? 0 : 1)
