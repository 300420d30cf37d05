//! `augur sweep --replicas … --routers …`: the cluster axis of a sweep, through the binary.

mod cli_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use cli_support::{augur, ok, stderr};

const SYN: &str = "synthetic:n=200,rate=40";

/// A fresh directory for one test's output.
fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("augur-sweep-cluster-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A CSV file or text as its header and rows of cells.
fn read_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header = rdr.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = rdr
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn column(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name} in {header:?}"))
}

#[test]
fn sweep_over_replicas_and_routers_writes_a_row_per_run_and_the_replica_plots() {
    let dir = temp_dir("grid");
    let out_dir = dir.join("out");
    let table = ok(&[
        "sweep",
        "--trace",
        SYN,
        "--policies",
        "fcfs,sprpt",
        "--rate-scales",
        "0.5,1",
        "--replicas",
        "1,2",
        "--routers",
        "round-robin,kv-prefix",
        "--kv-blocks",
        "1500",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (header, rows) = read_csv(&std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap());
    assert_eq!(
        header[..6],
        [
            "policy",
            "predictor",
            "rate_scale",
            "trace",
            "router",
            "replicas"
        ],
        "{header:?}"
    );
    assert_eq!(
        header[header.len() - 3..],
        [
            "load_imbalance_requests",
            "load_imbalance_tokens",
            "cluster_prefix_hit_rate"
        ],
        "{header:?}"
    );
    let (policy, rate, router, replicas) = (
        column(&header, "policy"),
        column(&header, "rate_scale"),
        column(&header, "router"),
        column(&header, "replicas"),
    );
    let combos: BTreeSet<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len());
            (
                r[policy].clone(),
                r[rate].clone(),
                r[router].clone(),
                r[replicas].clone(),
            )
        })
        .collect();
    let mut expected = BTreeSet::new();
    for p in ["fcfs", "sprpt"] {
        for x in ["0.5", "1.0"] {
            for r in ["round-robin", "kv-prefix"] {
                for n in ["1", "2"] {
                    expected.insert((p.into(), x.into(), r.into(), n.into()));
                }
            }
        }
    }
    assert_eq!(rows.len(), 16, "one row per combination");
    assert_eq!(combos, expected);
    // One replica is perfectly balanced; two round-robin replicas almost so.
    let imbalance = column(&header, "load_imbalance_requests");
    for r in &rows {
        let v: f64 = r[imbalance].parse().unwrap();
        if r[replicas] == "1" {
            assert_eq!(v, 1.0, "{r:?}");
        } else {
            assert!((1.0..2.0).contains(&v), "{r:?}");
        }
    }

    for (file, title) in [
        (
            "latency_vs_replicas.svg",
            "Mean end-to-end latency vs replicas",
        ),
        (
            "latency_p99_vs_replicas.svg",
            "p99 end-to-end latency vs replicas",
        ),
    ] {
        let svg = std::fs::read_to_string(out_dir.join(file)).unwrap();
        assert!(svg.contains(title), "{file}");
        // A marker per run; a legend entry per router, policy and rate scale.
        assert_eq!(svg.matches("<circle").count(), 16, "{file}");
        for r in ["round-robin", "kv-prefix"] {
            for p in ["fcfs", "sprpt"] {
                for x in ["x0.5", "x1"] {
                    let line = format!("{r} / {p} / {x}");
                    assert_eq!(
                        svg.lines().filter(|l| l.trim() == line).count(),
                        1,
                        "{file}: {line}"
                    );
                }
            }
        }
    }
    for file in [
        "latency_mean.svg",
        "latency_p99.svg",
        "cdf_0.5.svg",
        "cdf_1.svg",
    ] {
        let svg = std::fs::read_to_string(out_dir.join(file)).unwrap();
        assert!(svg.contains("sprpt / oracle / 2 × kv-prefix"), "{file}");
    }

    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("16 runs of "), "{table}");
    assert!(
        lines[1].starts_with("replicas  router       policy"),
        "{table}"
    );
    assert!(
        lines[4..]
            .iter()
            .any(|l| l.starts_with("2         kv-prefix    sprpt")),
        "{table}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_sweep_row_is_the_cluster_run_of_the_same_flags() {
    // Loads are per replica, so each replica count runs at its own rate scale; power-of-two
    // draws from --seed.
    let dir = temp_dir("equal");
    let out_dir = dir.join("out");
    let common = ["--trace", SYN, "--kv-blocks", "1500", "--seed", "5"];
    let o = augur(
        &[
            &[
                "sweep",
                "--policies",
                "sprpt",
                "--predictors",
                "lognormal:1",
                "--loads",
                "0.7",
                "--replicas",
                "1,3",
                "--routers",
                "power-of-two,kv-prefix",
                "--out",
                out_dir.to_str().unwrap(),
            ][..],
            &common,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--load 0.7 per replica on 3 replicas"),
        "{}",
        stderr(&o)
    );
    let (header, rows) = read_csv(&std::fs::read_to_string(out_dir.join("sweep.csv")).unwrap());
    assert_eq!(rows.len(), 4);
    let (router, replicas, rate) = (
        column(&header, "router"),
        column(&header, "replicas"),
        column(&header, "rate_scale"),
    );
    let mut rates = BTreeSet::new();
    for row in &rows {
        let cluster = ok(&[
            &[
                "cluster",
                "--policy",
                "sprpt",
                "--predictor",
                "lognormal:1",
                "--load",
                "0.7",
                "--replicas",
                &row[replicas],
                "--router",
                &row[router],
                "--format",
                "csv",
            ][..],
            &common,
        ]
        .concat());
        let (ch, crows) = read_csv(&cluster);
        let all = &crows[0];
        assert_eq!(all[column(&ch, "replica")], "all");
        for (i, name) in header.iter().enumerate() {
            if name == "wall_s" {
                continue;
            }
            assert_eq!(
                row[i],
                all[column(&ch, name)],
                "{} on {}: {name}",
                row[router],
                row[replicas]
            );
        }
        rates.insert(row[rate].clone());
    }
    assert_eq!(
        rates.len(),
        2,
        "one rate scale per replica count: {rates:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_cluster_flags_are_usage_errors_naming_the_flag() {
    let dir = temp_dir("bad");
    let out_dir = dir.join("out");
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--replicas", "0"], &["--replicas", "1..=128"]),
        (&["--replicas", "2,129"], &["--replicas", "1..=128"]),
        (
            &["--replicas", "2", "--routers", "round-robin,random"],
            &["--routers", "unknown router `random`"],
        ),
        (&["--routers", "kv-prefix"], &["--routers needs --replicas"]),
        (&["--weights", "queue=2"], &["--weights needs --replicas"]),
    ];
    for (flags, messages) in cases {
        let o = augur(
            &[
                &[
                    "sweep",
                    "--trace",
                    SYN,
                    "--policies",
                    "sprpt",
                    "--out",
                    out_dir.to_str().unwrap(),
                ][..],
                flags,
            ]
            .concat(),
        );
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", stderr(&o));
        for m in messages {
            assert!(stderr(&o).contains(m), "{flags:?}: {}", stderr(&o));
        }
        assert!(!out_dir.exists(), "{flags:?}: nothing is written");
    }
    std::fs::remove_dir_all(&dir).ok();
}
