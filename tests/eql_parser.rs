//! Parser acceptance tests against real inputs: the two seed detection rules and the Elasticsearch EQL
//! QA corpus (`../shared/conformance`), plus the printer round trip over all of them.

use esdetect::eql::ast::*;
use esdetect::eql::{parse, ErrorKind};
use std::path::PathBuf;

/// Query text of rule "Service Creation via Local Kerberos Authentication" (detection-rules, public rule text).
const KRBRELAYUP: &str = r#"sequence by winlog.computer_name with maxspan=5m
 [authentication where host.os.type == "windows" and

  /* event 4624 need to be logged */
  event.action == "logged-in" and event.outcome == "success" and winlog.event_data.ElevatedToken == "%%1843" and process.pid == 0 and 

  /* authenticate locally using relayed kerberos Ticket */
  winlog.event_data.AuthenticationPackageName :"Kerberos" and winlog.logon.type == "Network" and cidrmatch(source.ip, "127.0.0.0/8", "::1")] by winlog.event_data.TargetLogonId

  [any where host.os.type == "windows" and
   /* event 4697 need to be logged */
   event.action : "service-installed"] by winlog.event_data.SubjectLogonId
"#;

/// Query text of rule "Potential Machine Account Relay Attack via SMB".
const SMB_RELAY: &str = r#"file where host.os.type == "windows" and event.code == "5145" and endswith(user.name, "$") and

 /* compare computername with user.name and make sure they match (dot-boundary prevents prefix-only matches) */
 startswith~(concat(winlog.computer_name, "."), concat(substring(user.name, 0, -1), ".")) and

 /* exclude local access */
 not endswith(string(source.ip), string(host.ip)) and
 source.ip != "::" and source.ip != null and source.ip != "::1" and source.ip != "127.0.0.1"
"#;

/// Flattens a left-deep `and` chain into its conjuncts, in source order.
fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::And(a, b) => {
            let mut v = conjuncts(a);
            v.push(b);
            v
        }
        other => vec![other],
    }
}

fn field_path(e: &Expr) -> Option<&str> {
    match e {
        Expr::Field(f) => Some(&f.path),
        _ => None,
    }
}

#[test]
fn krbrelayup_rule_structure() {
    let q = parse(KRBRELAYUP).unwrap();
    assert!(q.pipes.is_empty());
    let QueryBody::Sequence(seq) = &q.body else { panic!("expected a sequence") };
    assert_eq!(seq.maxspan_ms, Some(300_000));
    assert_eq!(seq.by.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["winlog.computer_name"]);
    assert!(seq.until.is_none());
    assert_eq!(seq.stages.len(), 2);
    let (s1, s2) = (&seq.stages[0], &seq.stages[1]);
    assert_eq!(s1.filter.category.as_deref(), Some("authentication"));
    assert_eq!(s2.filter.category, None, "`any where` has no category");
    assert_eq!(s1.by[0].path, "winlog.event_data.TargetLogonId");
    assert_eq!(s2.by[0].path, "winlog.event_data.SubjectLogonId");
    assert!(!s1.missing && s1.runs == 1);

    let c1 = conjuncts(&s1.filter.condition);
    assert_eq!(c1.len(), 8);
    // process.pid == 0
    match c1[4] {
        Expr::Compare { op: CompareOp::Eq, left, right, .. } => {
            assert_eq!(field_path(left), Some("process.pid"));
            assert!(matches!(**right, Expr::Literal(Literal::Long(0), _)));
        }
        other => panic!("unexpected {other:?}"),
    }
    // AuthenticationPackageName : "Kerberos"
    match c1[5] {
        Expr::Match { op: MatchOp::Seq, case_insensitive: true, expr, patterns, .. } => {
            assert_eq!(field_path(expr), Some("winlog.event_data.AuthenticationPackageName"));
            assert!(matches!(&patterns[..], [Expr::Literal(Literal::String(s), _)] if s == "Kerberos"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // cidrmatch(source.ip, "127.0.0.0/8", "::1") — lower-case name resolves to CidrMatch.
    match c1[7] {
        Expr::Call { function: Function::CidrMatch, case_insensitive: false, args, .. } => {
            assert_eq!(args.len(), 3);
            assert_eq!(field_path(&args[0]), Some("source.ip"));
            assert!(matches!(&args[2], Expr::Literal(Literal::String(s), _) if s == "::1"));
        }
        other => panic!("unexpected {other:?}"),
    }
    let c2 = conjuncts(&s2.filter.condition);
    assert_eq!(c2.len(), 2);
    assert!(matches!(c2[1], Expr::Match { op: MatchOp::Seq, .. }));

    // Spans: the first stage starts at its `[` on line 2, column 2.
    assert_eq!((s1.filter.span.line, s1.filter.span.col), (2, 2));
    assert_eq!(&KRBRELAYUP[s1.by[0].span.start..s1.by[0].span.end], "winlog.event_data.TargetLogonId");
}

#[test]
fn smb_relay_rule_structure() {
    let q = parse(SMB_RELAY).unwrap();
    let QueryBody::Event(ev) = &q.body else { panic!("expected an event query") };
    assert_eq!(ev.category.as_deref(), Some("file"));
    let c = conjuncts(&ev.condition);
    assert_eq!(c.len(), 9);
    // event.code == "5145" keeps the string literal (coercion is the analyser's job).
    assert!(matches!(c[1], Expr::Compare { right, .. } if matches!(&**right, Expr::Literal(Literal::String(s), _) if s == "5145")));
    // endswith(user.name, "$")
    assert!(matches!(c[2], Expr::Call { function: Function::EndsWith, case_insensitive: false, args, .. } if args.len() == 2));
    // startswith~(concat(...), concat(substring(user.name, 0, -1), "."))
    match c[3] {
        Expr::Call { function: Function::StartsWith, case_insensitive: true, args, .. } => {
            let Expr::Call { function: Function::Concat, args: inner, .. } = &args[1] else { panic!() };
            let Expr::Call { function: Function::Substring, args: sub, .. } = &inner[0] else { panic!() };
            assert!(matches!(sub[2], Expr::Literal(Literal::Long(-1), _)), "negative literal folded");
        }
        other => panic!("unexpected {other:?}"),
    }
    // not endswith(string(source.ip), string(host.ip))
    match c[4] {
        Expr::Not(inner, _) => match &**inner {
            Expr::Call { function: Function::EndsWith, args, .. } => {
                assert!(matches!(&args[0], Expr::Call { function: Function::String, .. }));
                assert!(matches!(&args[1], Expr::Call { function: Function::String, args, .. } if field_path(&args[0]) == Some("host.ip")));
            }
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("`not` must bind only to the call: {other:?}"),
    }
    // source.ip != null
    assert!(matches!(c[6], Expr::Compare { op: CompareOp::NotEq, right, .. } if matches!(**right, Expr::Literal(Literal::Null, _))));
    assert!(matches!(c[8], Expr::Compare { op: CompareOp::NotEq, right, .. } if matches!(&**right, Expr::Literal(Literal::String(s), _) if s == "127.0.0.1")));
}

/// Active (uncommented) `query = '''...'''` strings of a QA spec file. A real TOML parser is not used
/// because `test_extra.toml` contains bare `null` values that strict TOML rejects.
fn active_queries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut name = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("[[queries]]") {
            in_block = true;
            name.clear();
        } else if t.starts_with('#') && t.trim_start_matches('#').trim_start().starts_with("[[queries]]") {
            in_block = false;
        } else if in_block && t.starts_with("name") {
            name = t.split('=').nth(1).unwrap_or("").trim().trim_matches('"').trim_matches('\'').to_string();
        } else if in_block && t.starts_with("query") {
            let rest = t.split_once('=').map(|x| x.1).unwrap_or("").trim();
            let (quote, body) = if let Some(b) = rest.strip_prefix("'''") {
                ("'''", b)
            } else if let Some(b) = rest.strip_prefix("\"\"\"") {
                ("\"\"\"", b)
            } else if let Some(b) = rest.strip_prefix('\'') {
                ("'", b)
            } else {
                ("\"", rest.strip_prefix('"').unwrap_or(rest))
            };
            let mut q = String::new();
            let mut cur = body.to_string();
            loop {
                if let Some(i) = cur.find(quote) {
                    q.push_str(&cur[..i]);
                    break;
                }
                q.push_str(&cur);
                q.push('\n');
                match lines.next() {
                    Some(l) => cur = l.to_string(),
                    None => break,
                }
            }
            out.push((name.clone(), q));
        }
    }
    out
}

fn corpus(file: &str) -> Option<Vec<(String, String)>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance").join(file);
    let text = std::fs::read_to_string(&path).ok()?;
    Some(active_queries(&text))
}

fn check_corpus(file: &str, expected_min: usize) {
    let queries = corpus(file).unwrap_or_else(|| panic!("{file} is missing from ../shared/conformance beside the repository"));
    assert!(queries.len() >= expected_min, "{file}: only {} active queries found", queries.len());
    let mut failures = Vec::new();
    let mut parsed_ok = 0;
    for (name, q) in &queries {
        match parse(q) {
            Ok(parsed) => {
                parsed_ok += 1;
                // The normalised text must parse back to the same tree.
                let printed = parsed.to_string();
                match parse(&printed) {
                    Ok(again) => assert_eq!(strip(&again), strip(&parsed), "{name}: round trip changed the query:\n{printed}"),
                    Err(e) => failures.push(format!("{name}: printed form does not parse: {}\n{printed}", e.render(&printed))),
                }
            }
            Err(e) if e.is_unsupported() => {}
            Err(e) => failures.push(format!("{name}: {}", e.render(q))),
        }
    }
    assert!(failures.is_empty(), "{} of {} queries failed:\n{}", failures.len(), queries.len(), failures.join("\n"));
    // Every active query in these files runs on Elasticsearch, so none should be "unsupported" here.
    assert!(parsed_ok >= expected_min, "{file}: only {parsed_ok} of {} queries parsed", queries.len());
}

#[test]
fn es_qa_test_queries_parse() {
    check_corpus("test_queries.toml", 130);
}

#[test]
fn es_qa_test_extra_parse() {
    check_corpus("test_extra.toml", 40);
}

#[test]
fn es_qa_test_sample_parse() {
    check_corpus("test_sample.toml", 25);
}

#[test]
fn es_qa_test_missing_events_parse() {
    check_corpus("test_missing_events.toml", 26);
}

/// Sample and missing-event queries parse to the structure Elasticsearch builds, and their errors point at
/// the culprit (`line:col`).
#[test]
fn sample_and_missing_event_structure() {
    let q = parse("sample by host\n  [any where uptime > 0] by os\n  [any where port > 100] by op_sys").unwrap();
    let QueryBody::Sample(s) = &q.body else { panic!("expected a sample") };
    assert_eq!((s.by.len(), s.stages.len()), (1, 2));
    assert!(s.stages.iter().all(|st| !st.missing && st.runs == 1));
    let q = parse("sequence with maxspan=1s\n ![a where true] by z\n [b where true] by x\n ![c where true] by y with runs=2").unwrap();
    let QueryBody::Sequence(seq) = &q.body else { panic!("expected a sequence") };
    assert_eq!(seq.stages.iter().map(|st| (st.missing, st.runs)).collect::<Vec<_>>(), vec![(true, 1), (false, 1), (true, 2)]);
    let text = "sample by h\n  [a where true]\n  ![b where true]";
    let e = parse(text).unwrap_err();
    assert_eq!((e.span.line, e.span.col), (3, 3), "{}", e.render(text));
    // Well-formed stages with no positive one parse; verification rejects them (with every other problem).
    assert!(parse("sequence\n  ![a where true]\n  ![b where true]").is_ok());
}

#[test]
fn seed_rules_round_trip() {
    for q in [KRBRELAYUP, SMB_RELAY] {
        let parsed = parse(q).unwrap();
        let again = parse(&parsed.to_string()).unwrap();
        assert_eq!(strip(&again), strip(&parsed));
    }
}

#[test]
fn unsupported_constructs_say_so() {
    for q in [
        "join by pid [process where true] [file where true]",
        "process where true | unique process_name",
        "process where true | count",
        "process where descendant of [process where true]",
        "process where arrayContains(x, \"a\")",
    ] {
        let e = parse(q).unwrap_err();
        assert!(e.is_unsupported(), "{q}: {}", e.message);
        assert_eq!(e.kind, ErrorKind::Syntax);
    }
}

// ------------------------------------------------------------------ span-free comparison

/// A copy of the query with every span zeroed, so trees from different texts compare by structure.
fn strip(q: &Query) -> Query {
    let mut q = q.clone();
    match &mut q.body {
        QueryBody::Event(e) => strip_filter(e),
        QueryBody::Sequence(s) => {
            s.span = Span::default();
            s.by.iter_mut().for_each(strip_field);
            for st in s.stages.iter_mut().chain(s.until.iter_mut()) {
                strip_filter(&mut st.filter);
                st.by.iter_mut().for_each(strip_field);
            }
        }
        QueryBody::Sample(s) => {
            s.span = Span::default();
            s.by.iter_mut().for_each(strip_field);
            for st in s.stages.iter_mut() {
                strip_filter(&mut st.filter);
                st.by.iter_mut().for_each(strip_field);
            }
        }
    }
    q
}

fn strip_filter(f: &mut EventFilter) {
    f.span = Span::default();
    strip_expr(&mut f.condition);
}

fn strip_field(f: &mut FieldRef) {
    f.span = Span::default();
}

fn strip_expr(e: &mut Expr) {
    match e {
        Expr::Literal(_, s) => *s = Span::default(),
        Expr::Field(f) => strip_field(f),
        Expr::And(a, b) | Expr::Or(a, b) => {
            strip_expr(a);
            strip_expr(b);
        }
        Expr::Not(x, s) | Expr::Neg(x, s) => {
            *s = Span::default();
            strip_expr(x);
        }
        Expr::Compare { left, right, span, .. } | Expr::Arith { left, right, span, .. } => {
            *span = Span::default();
            strip_expr(left);
            strip_expr(right);
        }
        Expr::Match { expr, patterns, span, .. } => {
            *span = Span::default();
            strip_expr(expr);
            patterns.iter_mut().for_each(strip_expr);
        }
        Expr::In { expr, values, span, .. } => {
            *span = Span::default();
            strip_expr(expr);
            values.iter_mut().for_each(strip_expr);
        }
        Expr::Call { args, span, .. } => {
            *span = Span::default();
            args.iter_mut().for_each(strip_expr);
        }
    }
}
