use std::{os::unix::fs::PermissionsExt as _, process::Command};

use super::{verify::Link, *};
use crate::custody::verify::{Verdict, verify_dir};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tap-custody-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn manifest(&self) -> PathBuf {
        self.0.join(MANIFEST_NAME)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Three recorded files: a.pcap, b.pcap, c.pcap.
fn three_files(name: &str, signer: Option<SecretKey>) -> Scratch {
    let dir = Scratch::new(name);
    let mut c = Custody::open(&dir.0, signer).unwrap();
    for (n, body) in [
        ("a.pcap", "first"),
        ("b.pcap", "second"),
        ("c.pcap", "third"),
    ] {
        std::fs::write(dir.join(n), body).unwrap();
        let e = c.record(&dir.join(n)).unwrap();
        assert_eq!(e.name.as_deref(), Some(n));
    }
    dir
}

fn broken(dir: &Scratch, key: Option<&PublicKey>) -> verify::Broken {
    match verify_dir(&dir.0, key).unwrap() {
        Verdict::Broken(b) => b,
        Verdict::Intact(i) => panic!("expected a broken chain, got: {i}"),
    }
}

fn intact(dir: &Scratch, key: Option<&PublicKey>) -> verify::Intact {
    match verify_dir(&dir.0, key).unwrap() {
        Verdict::Intact(i) => i,
        Verdict::Broken(b) => panic!("expected an intact directory: {b}"),
    }
}

fn lines(dir: &Scratch) -> Vec<String> {
    std::fs::read_to_string(dir.manifest())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(dir: &Scratch, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.manifest(), text).unwrap();
}

#[test]
fn entries_chain_and_hash_the_files() {
    let dir = three_files("chain", None);
    let l = lines(&dir);
    assert_eq!(l.len(), 3);
    let entries: Vec<Entry> = l
        .iter()
        .map(|l| Entry::parse(l.as_bytes()).unwrap())
        .collect();
    assert_eq!(entries[0].prev, GENESIS);
    assert_eq!(entries[1].prev, entries[0].hash);
    assert_eq!(entries[2].prev, entries[1].hash);
    assert_eq!(entries[0].size, Some(5));
    // sha256("first"), as sha256sum computes it.
    assert_eq!(
        entries[0].sha256.as_deref(),
        Some("a7937b64b8caa58f03721bb6bacf5c78cb235febe0e70b1b84cd99541461a08e")
    );
    assert!(l[0].starts_with(r#"{"v":1,"seq":1,"op":"add","name":"a.pcap","size":5,"sha256":""#));
    let i = intact(&dir, None);
    assert_eq!((i.entries, i.files), (3, 3));
    assert_eq!(i.head.as_ref().map(|h| h.0), Some(3));
    assert!(i.to_string().contains("intact: 3 entries, 3 files"), "{i}");
    assert_eq!(
        std::fs::metadata(dir.manifest())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

#[test]
fn a_flipped_byte_names_the_file() {
    let dir = three_files("flip", None);
    let mut bytes = std::fs::read(dir.join("b.pcap")).unwrap();
    bytes[2] ^= 0x01;
    std::fs::write(dir.join("b.pcap"), bytes).unwrap();
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Entry {
            seq: 2,
            name: Some("b.pcap".into())
        }
    );
    assert!(b.reason.contains("SHA-256"), "{b}");
}

#[test]
fn deleted_lines_break_the_chain() {
    // A line in the middle: the next one no longer follows.
    let dir = three_files("delete-mid", None);
    let mut l = lines(&dir);
    l.remove(1);
    write_lines(&dir, &l);
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Entry {
            seq: 3,
            name: Some("c.pcap".into())
        },
        "{b}"
    );
    // The first line: the chain does not start at the genesis.
    let dir = three_files("delete-first", None);
    let mut l = lines(&dir);
    l.remove(0);
    write_lines(&dir, &l);
    let b = broken(&dir, None);
    assert!(matches!(b.link, Link::Entry { seq: 2, .. }), "{b}");
    // The last line: its file is no longer in the manifest.
    let dir = three_files("delete-last", None);
    let mut l = lines(&dir);
    l.pop();
    write_lines(&dir, &l);
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::File {
            name: "c.pcap".into()
        },
        "{b}"
    );
}

#[test]
fn swapped_files_and_lines_are_seen() {
    let dir = three_files("swap", None);
    std::fs::rename(dir.join("a.pcap"), dir.join("t")).unwrap();
    std::fs::rename(dir.join("c.pcap"), dir.join("a.pcap")).unwrap();
    std::fs::rename(dir.join("t"), dir.join("c.pcap")).unwrap();
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Entry {
            seq: 1,
            name: Some("a.pcap".into())
        },
        "{b}"
    );
    let dir = three_files("swap-lines", None);
    let mut l = lines(&dir);
    l.swap(0, 1);
    write_lines(&dir, &l);
    let b = broken(&dir, None);
    assert!(matches!(b.link, Link::Entry { seq: 2, .. }), "{b}");
}

#[test]
fn an_edited_entry_is_seen() {
    let dir = three_files("edit", None);
    // The file and its entry changed together: the entry's hash no longer matches.
    std::fs::write(dir.join("b.pcap"), "forged").unwrap();
    let mut l = lines(&dir);
    let e = Entry::parse(l[1].as_bytes()).unwrap();
    let forged_sha = hex(&Sha256::digest(b"forged"));
    l[1] = l[1].replace(e.sha256.as_deref().unwrap(), &forged_sha);
    write_lines(&dir, &l);
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Line {
            line: 2,
            name: Some("b.pcap".into())
        },
        "{b}"
    );
    assert!(b.reason.contains("altered"), "{b}");
    // A space added: not canonical.
    let dir = three_files("edit-space", None);
    let mut l = lines(&dir);
    l[0] = l[0].replacen(',', ", ", 1);
    write_lines(&dir, &l);
    assert!(broken(&dir, None).reason.contains("canonical"));
}

#[test]
fn a_cut_manifest_fails_until_the_next_append_repairs_it() {
    let dir = three_files("cut", None);
    let text = std::fs::read(dir.manifest()).unwrap();
    // Mid-way through the last line: what a kill -9 during an append leaves.
    let cut = text.len() - 40;
    std::fs::write(dir.manifest(), &text[..cut]).unwrap();
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Line {
            line: 3,
            name: None
        },
        "{b}"
    );
    assert!(b.reason.contains("entries 1 to 2 verify"), "{b}");
    // The next append cuts the torn line off and goes on from entry 2; the file of the torn
    // entry (c.pcap) is then not in the manifest, until it is recorded again.
    let mut c = Custody::open(&dir.0, None).unwrap();
    std::fs::write(dir.join("d.pcap"), "fourth").unwrap();
    let e = c.record(&dir.join("d.pcap")).unwrap();
    assert_eq!(e.seq, 3);
    assert_eq!(
        broken(&dir, None).link,
        Link::File {
            name: "c.pcap".into()
        }
    );
    c.record(&dir.join("c.pcap")).unwrap();
    assert_eq!(intact(&dir, None).entries, 4);

    // Cut right before the last newline: a whole entry, kept and completed.
    let dir = three_files("cut-newline", None);
    let text = std::fs::read(dir.manifest()).unwrap();
    std::fs::write(dir.manifest(), &text[..text.len() - 1]).unwrap();
    assert!(matches!(
        broken(&dir, None).link,
        Link::Line { line: 3, .. }
    ));
    let mut c = Custody::open(&dir.0, None).unwrap();
    std::fs::write(dir.join("d.pcap"), "fourth").unwrap();
    assert_eq!(c.record(&dir.join("d.pcap")).unwrap().seq, 4);
    assert_eq!(intact(&dir, None).entries, 4);
}

#[test]
fn a_damaged_last_entry_refuses_appends() {
    let dir = three_files("damaged", None);
    let mut l = lines(&dir);
    l[2] = l[2].replace("c.pcap", "x.pcap");
    write_lines(&dir, &l);
    let mut c = Custody::open(&dir.0, None).unwrap();
    std::fs::write(dir.join("d.pcap"), "fourth").unwrap();
    assert!(matches!(
        c.record(&dir.join("d.pcap")),
        Err(CustodyError::Damaged { .. })
    ));
    assert_eq!(lines(&dir), l, "nothing appended");
}

#[test]
fn signatures_sign_the_head() {
    let key = SecretKey::generate().unwrap();
    let public = key.public();
    let dir = three_files("signed", Some(key));
    let i = intact(&dir, Some(&public));
    assert!(i.trusted);
    assert!(i.to_string().contains("head signed by"), "{i}");
    // Another key is not the trusted one.
    let other = SecretKey::generate().unwrap().public();
    let b = broken(&dir, Some(&other));
    assert!(b.reason.contains("not by the trusted key"), "{b}");
    // A tampered signature.
    let mut l = lines(&dir);
    let e = Entry::parse(l[1].as_bytes()).unwrap();
    let sig = e.sig.unwrap();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { '1' } else { '0' },
        &sig[1..]
    );
    l[1] = l[1].replace(&sig, &flipped);
    write_lines(&dir, &l);
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Entry {
            seq: 2,
            name: Some("b.pcap".into())
        },
        "{b}"
    );
    assert!(b.reason.contains("signature does not verify"), "{b}");
    // A signature removed: the entry still names its key.
    let dir2 = three_files("unsigned-strip", Some(SecretKey::generate().unwrap()));
    let mut l = lines(&dir2);
    let e = Entry::parse(l[2].as_bytes()).unwrap();
    l[2] = l[2].replace(&format!(",\"sig\":\"{}\"", e.sig.unwrap()), "");
    write_lines(&dir2, &l);
    assert!(broken(&dir2, None).reason.contains("no signature"));
}

#[test]
fn a_trusted_key_needs_a_signed_head_and_a_seal_gives_one() {
    let dir = three_files("seal", None);
    let key_dir = Scratch::new("seal-key");
    let (secret, public) = (key_dir.join("k"), key_dir.join("k.pub"));
    let public_key = generate_key_pair(&secret, &public).unwrap();
    assert_eq!(PublicKey::load(&public).unwrap(), public_key);
    let b = broken(&dir, Some(&public_key));
    assert!(b.reason.contains("head is not signed"), "{b}");
    assert!(intact(&dir, None).to_string().contains("unsigned"));
    let mut c = Custody::open(&dir.0, Some(SecretKey::load(&secret).unwrap())).unwrap();
    let e = c.seal().unwrap();
    assert_eq!((e.seq, e.op, e.name), (4, Op::Seal, None));
    assert!(intact(&dir, Some(&public_key)).trusted);
    // A file added after the seal, unsigned: the head is no longer signed.
    let mut c = Custody::open(&dir.0, None).unwrap();
    std::fs::write(dir.join("d.pcap"), "late").unwrap();
    c.record(&dir.join("d.pcap")).unwrap();
    assert!(
        broken(&dir, Some(&public_key))
            .reason
            .contains("entries 5 to 5 come after the last signature")
    );
    // Neither key file may be replaced.
    assert!(generate_key_pair(&secret, &key_dir.join("other.pub")).is_err());
    assert!(!key_dir.join("other.pub").exists());
}

#[test]
fn removals_and_unrecorded_files() {
    let dir = three_files("remove", None);
    let mut c = Custody::open(&dir.0, None).unwrap();
    std::fs::remove_file(dir.join("a.pcap")).unwrap();
    c.record_removal(&dir.join("a.pcap")).unwrap();
    assert_eq!(intact(&dir, None).files, 2);
    // A removed file back again.
    std::fs::write(dir.join("a.pcap"), "first").unwrap();
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Entry {
            seq: 4,
            name: Some("a.pcap".into())
        }
    );
    std::fs::remove_file(dir.join("a.pcap")).unwrap();
    // Hidden files (a capture's .part) are not looked at; others must be recorded.
    std::fs::write(dir.join(".x.pcap.part"), "partial").unwrap();
    intact(&dir, None);
    std::fs::write(dir.join("stray.txt"), "hello").unwrap();
    assert_eq!(
        broken(&dir, None).link,
        Link::File {
            name: "stray.txt".into()
        }
    );
    // A missing file.
    std::fs::remove_file(dir.join("stray.txt")).unwrap();
    std::fs::remove_file(dir.join("b.pcap")).unwrap();
    let b = broken(&dir, None);
    assert_eq!(
        b.link,
        Link::Entry {
            seq: 2,
            name: Some("b.pcap".into())
        }
    );
    assert!(b.reason.contains("missing"));
}

#[test]
fn names_outside_the_directory_are_refused() {
    let dir = Scratch::new("names");
    let other = Scratch::new("names-other");
    let mut c = Custody::open(&dir.0, None).unwrap();
    std::fs::write(other.join("x"), "x").unwrap();
    assert!(matches!(
        c.record(&other.join("x")),
        Err(CustodyError::OtherDirectory { .. })
    ));
    assert!(matches!(
        c.record(&dir.manifest()),
        Err(CustodyError::BadName { .. })
    ));
    std::os::unix::fs::symlink(other.join("x"), dir.join("link")).unwrap();
    assert!(c.record(&dir.join("link")).is_err());
}

#[test]
fn concurrent_writers_take_turns() {
    let dir = Scratch::new("concurrent");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let d = dir.0.clone();
            std::thread::spawn(move || {
                let mut c = Custody::open(&d, None).unwrap();
                for i in 0..25 {
                    let p = d.join(format!("f{t}-{i}"));
                    std::fs::write(&p, format!("{t} {i}")).unwrap();
                    c.record(&p).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let i = intact(&dir, None);
    assert_eq!((i.entries, i.files), (100, 100));
}

#[test]
fn the_recorder_records_in_order() {
    let dir = Scratch::new("recorder");
    let r = Recorder::spawn(dir.0.clone(), None);
    for n in ["1", "2", "3"] {
        std::fs::write(dir.join(n), n).unwrap();
        r.record(&dir.join(n));
    }
    // Deleted right away (the ring): the open file is still hashed.
    std::fs::remove_file(dir.join("1")).unwrap();
    r.removed(&dir.join("1"));
    assert_eq!(r.finish(), 0);
    let i = intact(&dir, None);
    assert_eq!((i.entries, i.files), (4, 2));
    // No manifest until the first file.
    let empty = Scratch::new("recorder-empty");
    drop(Recorder::spawn(empty.0.clone(), None));
    assert!(!empty.manifest().exists());
}

#[test]
fn key_files_are_bounded_and_private() {
    let dir = Scratch::new("keys");
    let big = dir.join("big");
    std::fs::write(&big, vec![b'A'; 10_000]).unwrap();
    assert!(matches!(
        PublicKey::load(&big),
        Err(KeyError::TooLarge { .. })
    ));
    let (secret, public) = (dir.join("k"), dir.join("k.pub"));
    generate_key_pair(&secret, &public).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        SecretKey::load(&secret),
        Err(KeyError::Exposed { .. })
    ));
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    SecretKey::load(&secret).unwrap();
    assert!(matches!(
        SecretKey::load(&public),
        Err(KeyError::Format { .. })
    ));
    assert!(matches!(
        PublicKey::load(&secret),
        Err(KeyError::Format { .. })
    ));
    std::os::unix::fs::symlink(&public, dir.join("link")).unwrap();
    assert!(matches!(
        PublicKey::load(&dir.join("link")),
        Err(KeyError::Read { .. })
    ));
}

/// OpenSSL as the oracle: it reads our key files, makes keys we read, and checks a signature
/// of an entry the way its format says.
#[test]
fn openssl_reads_our_keys_and_checks_our_signatures() {
    let dir = Scratch::new("openssl");
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    // Theirs, ours to use.
    run(&["genpkey", "-algorithm", "ed25519", "-out", &p("theirs.key")]);
    std::fs::set_permissions(
        dir.join("theirs.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    run(&[
        "pkey",
        "-in",
        &p("theirs.key"),
        "-pubout",
        "-out",
        &p("theirs.pub"),
    ]);
    let theirs = SecretKey::load(&dir.join("theirs.key")).unwrap();
    assert_eq!(
        PublicKey::load(&dir.join("theirs.pub")).unwrap(),
        theirs.public()
    );
    // Ours, theirs to read: the same public key.
    generate_key_pair(&dir.join("ours.key"), &dir.join("ours.pub")).unwrap();
    let derived = run(&["pkey", "-in", &p("ours.key"), "-pubout"]);
    assert_eq!(
        derived.trim(),
        std::fs::read_to_string(dir.join("ours.pub"))
            .unwrap()
            .trim()
    );
    // An entry signed by ours: openssl verifies the signature over context + hash.
    let files = Scratch::new("openssl-files");
    std::fs::write(files.join("a"), "a").unwrap();
    let mut c = Custody::open(
        &files.0,
        Some(SecretKey::load(&dir.join("ours.key")).unwrap()),
    )
    .unwrap();
    let e = c.record(&files.join("a")).unwrap();
    let mut message = SIGNATURE_CONTEXT.to_vec();
    message.extend_from_slice(&unhex::<32>(&e.hash).unwrap());
    std::fs::write(dir.join("msg"), &message).unwrap();
    std::fs::write(
        dir.join("sig"),
        unhex::<64>(e.sig.as_deref().unwrap()).unwrap(),
    )
    .unwrap();
    let verified = run(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &p("ours.pub"),
        "-rawin",
        "-in",
        &p("msg"),
        "-sigfile",
        &p("sig"),
    ]);
    assert!(
        verified.contains("Signature Verified Successfully"),
        "{verified}"
    );
}

#[test]
fn times_are_rfc3339() {
    assert_eq!(rfc3339(1_795_774_507, 5), "2026-11-27T10:15:07.000000005Z");
    assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
    assert_eq!(unhex::<2>("0aFf"), Some([0x0a, 0xff]));
    assert_eq!(unhex::<2>("0aF"), None);
    assert_eq!(unhex::<1>("zz"), None);
}
