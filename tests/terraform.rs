//! Offline checks of `terraform/` (no Terraform binary or AWS account is
//! needed): every `.tf` file is parsed with `hcl-rs`, and the deployment's
//! promises are asserted on the parsed configuration: an NLB, `ip` target
//! groups health-checked on `/healthz`, two AZs, both scaling policies on the
//! gateway's own EMF metric, shutdown timings that fit the gateway's grace
//! period, log retention, ECR scanning, encrypted Redis, and an admin token
//! that is never plain text. References to `var.x` and `local.x` are followed
//! to the variable's default and the local's value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::expr::{FuncCall, TemplateExpr, TraversalOperator};
use hcl::{Block, BlockLabel, Body, Expression, ObjectKey};

use echo_gateway::emf;

// ------------------------------------------------------------------ loading

struct Tf {
    /// Top-level blocks of every file, with the file they come from.
    blocks: Vec<(String, Block)>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Tf {
    fn load() -> Tf {
        let dir = repo().join("terraform");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "tf"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no .tf file in {}", dir.display());
        let mut blocks = Vec::new();
        for f in &files {
            let text = std::fs::read_to_string(f).expect("read .tf file");
            let body = hcl::parse(&text)
                .unwrap_or_else(|e| panic!("{} does not parse as HCL: {e}", f.display()));
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            for b in body.into_blocks() {
                blocks.push((name.clone(), b));
            }
        }
        Tf { blocks }
    }

    fn files(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self.blocks.iter().map(|(f, _)| f.as_str()).collect();
        f.dedup();
        f
    }

    /// Blocks `kind "ty" "name"` (kind = resource or data) of a type.
    fn typed(&self, kind: &str, ty: &str) -> Vec<(&str, &Body)> {
        self.blocks
            .iter()
            .filter(|(_, b)| b.identifier.as_str() == kind && label(b, 0) == Some(ty))
            .map(|(_, b)| (label(b, 1).unwrap_or(""), &b.body))
            .collect()
    }

    fn resources(&self, ty: &str) -> Vec<(&str, &Body)> {
        self.typed("resource", ty)
    }

    fn resource(&self, ty: &str, name: &str) -> &Body {
        self.resources(ty)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .unwrap_or_else(|| panic!("terraform/ has no resource `{ty}.{name}`"))
    }

    fn variable(&self, name: &str) -> &Body {
        self.blocks
            .iter()
            .find(|(_, b)| b.identifier.as_str() == "variable" && label(b, 0) == Some(name))
            .map(|(_, b)| &b.body)
            .unwrap_or_else(|| panic!("terraform/ has no variable `{name}`"))
    }

    fn variables(&self) -> Vec<(&str, &Body)> {
        self.blocks
            .iter()
            .filter(|(_, b)| b.identifier.as_str() == "variable")
            .map(|(_, b)| (label(b, 0).unwrap_or(""), &b.body))
            .collect()
    }

    fn local(&self, name: &str) -> &Expression {
        self.blocks
            .iter()
            .filter(|(_, b)| b.identifier.as_str() == "locals")
            .find_map(|(_, b)| attr(&b.body, name))
            .unwrap_or_else(|| panic!("terraform/ has no local `{name}`"))
    }

    /// Follows `var.x` to x's default and `local.x` to its value, until the
    /// expression is something else.
    fn resolve<'a>(&'a self, mut e: &'a Expression) -> &'a Expression {
        for _ in 0..32 {
            match reference(e).as_deref() {
                Some([root, name]) if root == "var" => {
                    e = attr(self.variable(name), "default")
                        .unwrap_or_else(|| panic!("variable `{name}` has no default"));
                }
                Some([root, name]) if root == "local" => e = self.local(name),
                _ => return e,
            }
        }
        panic!("reference loop at {}", show(e))
    }

    fn number(&self, e: &Expression, what: &str) -> f64 {
        match self.resolve(e) {
            Expression::Number(n) => n.as_f64().expect("finite number"),
            other => panic!(
                "{what}: expected a number (or a variable with a number default), found `{}`",
                show(other)
            ),
        }
    }

    fn string<'a>(&'a self, e: &'a Expression, what: &str) -> &'a str {
        let r = self.resolve(e);
        literal(r).unwrap_or_else(|| {
            panic!(
                "{what}: expected a plain string (or a variable with one as default), found `{}`",
                show(r)
            )
        })
    }
}

fn label(b: &Block, i: usize) -> Option<&str> {
    b.labels.get(i).map(|l| match l {
        BlockLabel::String(s) => s.as_str(),
        BlockLabel::Identifier(i) => i.as_str(),
    })
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes()
        .find(|a| a.key.as_str() == key)
        .map(|a| &a.expr)
}

fn req<'a>(body: &'a Body, key: &str, what: &str) -> &'a Expression {
    attr(body, key).unwrap_or_else(|| panic!("{what} has no `{key}`"))
}

fn blocks<'a>(body: &'a Body, ident: &'a str) -> impl Iterator<Item = &'a Body> + 'a {
    body.blocks()
        .filter(move |b| b.identifier.as_str() == ident)
        .map(|b| &b.body)
}

fn block<'a>(body: &'a Body, ident: &'a str, what: &str) -> &'a Body {
    blocks(body, ident)
        .next()
        .unwrap_or_else(|| panic!("{what} has no `{ident}` block"))
}

/// A string without interpolation.
fn literal(e: &Expression) -> Option<&str> {
    match e {
        Expression::String(s) => Some(s),
        Expression::TemplateExpr(t) => match t.as_ref() {
            TemplateExpr::QuotedString(s) if !s.contains("${") => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn boolean(e: &Expression) -> Option<bool> {
    match e {
        Expression::Bool(b) => Some(*b),
        _ => None,
    }
}

/// `a.b.c` as ["a", "b", "c"]; None for anything else (indexes included).
fn reference(e: &Expression) -> Option<Vec<String>> {
    match e {
        Expression::Variable(v) => Some(vec![v.as_str().to_string()]),
        Expression::Traversal(t) => {
            let mut path = reference(&t.expr)?;
            for op in &t.operators {
                match op {
                    TraversalOperator::GetAttr(id) => path.push(id.as_str().to_string()),
                    _ => return None,
                }
            }
            Some(path)
        }
        _ => None,
    }
}

fn show(e: &Expression) -> String {
    hcl::format::to_string(e).unwrap_or_else(|_| format!("{e:?}"))
}

fn func<'a>(e: &'a Expression, name: &str) -> Option<&'a FuncCall> {
    match e {
        Expression::FuncCall(f) if f.name.name.as_str() == name => Some(f),
        _ => None,
    }
}

fn get<'a>(obj: &'a Expression, key: &str) -> Option<&'a Expression> {
    let Expression::Object(map) = obj else {
        return None;
    };
    map.iter().find_map(|(k, v)| {
        let name = match k {
            ObjectKey::Identifier(id) => Some(id.as_str()),
            ObjectKey::Expression(e) => literal(e),
            _ => None,
        };
        (name == Some(key)).then_some(v)
    })
}

/// Every object literal inside an expression (through concat(), conditionals,
/// arrays), with `local.x` followed.
fn objects<'a>(tf: &'a Tf, e: &'a Expression, out: &mut Vec<&'a Expression>) {
    match tf.resolve(e) {
        o @ Expression::Object(_) => out.push(o),
        Expression::Array(items) => items.iter().for_each(|i| objects(tf, i, out)),
        Expression::FuncCall(f) => f.args.iter().for_each(|a| objects(tf, a, out)),
        Expression::Conditional(c) => {
            objects(tf, &c.true_expr, out);
            objects(tf, &c.false_expr, out);
        }
        Expression::Parenthesis(p) => objects(tf, p, out),
        _ => {}
    }
}

/// Whether an expression mentions `needle` anywhere (as text).
fn mentions(e: &Expression, needle: &str) -> bool {
    show(e).contains(needle)
}

/// The gateway container of the task definition.
fn container(tf: &Tf) -> &Expression {
    let td = tf.resource("aws_ecs_task_definition", "gateway");
    let defs = req(
        td,
        "container_definitions",
        "aws_ecs_task_definition.gateway",
    );
    let f = func(defs, "jsonencode")
        .expect("container_definitions should be jsonencode([...]) so that it can be checked");
    match &f.args[0] {
        Expression::Array(items) if items.len() == 1 => &items[0],
        other => panic!(
            "container_definitions should hold exactly one container, found `{}`",
            show(other)
        ),
    }
}

/// name -> object of the container's `environment` or `secrets`.
fn named_entries<'a>(tf: &'a Tf, list: &'a Expression) -> BTreeMap<String, &'a Expression> {
    let mut objs = Vec::new();
    objects(tf, list, &mut objs);
    objs.into_iter()
        .map(|o| {
            let name = get(o, "name").and_then(literal).unwrap_or_else(|| {
                panic!(
                    "an environment or secrets entry has no plain `name`: `{}`",
                    show(o)
                )
            });
            (name.to_string(), o)
        })
        .collect()
}

/// `[server] shutdown_grace_secs` of the config baked into the image.
fn image_grace_secs() -> f64 {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    let copy = dockerfile
        .lines()
        .find(|l| l.starts_with("COPY config/") && l.contains("/etc/echo-gateway"))
        .expect("the Dockerfile should COPY a file of config/ into /etc/echo-gateway");
    let src = copy.split_whitespace().nth(1).unwrap();
    let text = std::fs::read_to_string(repo().join(src)).expect("read the image's config");
    let cfg: toml::Table = text.parse().expect("the image's config is TOML");
    cfg.get("server")
        .and_then(|s| s.get("shutdown_grace_secs"))
        .map(|v| v.as_integer().expect("shutdown_grace_secs is an integer") as f64)
        .unwrap_or(10.0)
}

// ------------------------------------------------------------------ tests

#[test]
fn every_tf_file_parses_and_each_concern_has_its_file() {
    let tf = Tf::load();
    let files = tf.files();
    for f in [
        "versions.tf",
        "variables.tf",
        "outputs.tf",
        "network.tf",
        "nlb.tf",
        "ecs.tf",
        "autoscaling.tf",
        "observability.tf",
        "iam.tf",
        "redis.tf",
        "ecr.tf",
    ] {
        assert!(
            files.contains(&f),
            "terraform/{f} is missing (found {files:?})"
        );
    }
}

#[test]
fn aws_provider_is_5_or_newer() {
    let tf = Tf::load();
    let terraform = tf
        .blocks
        .iter()
        .find(|(_, b)| b.identifier.as_str() == "terraform")
        .map(|(_, b)| &b.body)
        .expect("a `terraform` block with required_providers");
    let providers = block(terraform, "required_providers", "the terraform block");
    let aws = req(providers, "aws", "required_providers");
    let version = get(aws, "version")
        .and_then(literal)
        .expect("aws provider version");
    let major: u32 = version
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the aws provider constraint `{version}`"));
    assert!(
        version.trim_start().starts_with(">=") && major >= 5,
        "the aws provider constraint should be `>= 5...`, found `{version}`"
    );
}

#[test]
fn load_balancer_is_a_public_network_load_balancer_with_security_groups() {
    let tf = Tf::load();
    let lbs = tf.resources("aws_lb");
    assert!(!lbs.is_empty(), "terraform/ has no aws_lb");
    for (name, lb) in lbs {
        let what = format!("aws_lb.{name}");
        let ty = tf.string(req(lb, "load_balancer_type", &what), &what);
        assert_eq!(
            ty, "network",
            "{what}: load_balancer_type must be \"network\" (an NLB), found \"{ty}\""
        );
        assert!(
            mentions(req(lb, "subnets", &what), "aws_subnet.public"),
            "{what} must be in the public subnets"
        );
        assert!(
            attr(lb, "security_groups").is_some(),
            "{what} needs security groups (they decide who reaches the admin listener)"
        );
    }
}

#[test]
fn target_groups_are_ip_targets_health_checked_over_http_on_healthz() {
    let tf = Tf::load();
    let tgs = tf.resources("aws_lb_target_group");
    assert!(
        tgs.len() >= 2,
        "expected target groups for mocks and admin, found {}",
        tgs.len()
    );
    for (name, tg) in tgs {
        let what = format!("aws_lb_target_group.{name}");
        assert_eq!(
            tf.string(req(tg, "target_type", &what), &what),
            "ip",
            "{what}: target_type must be \"ip\" (Fargate tasks in awsvpc mode)"
        );
        let hc = block(tg, "health_check", &what);
        assert_eq!(
            tf.string(req(hc, "protocol", &what), &what),
            "HTTP",
            "{what}: the health check must be HTTP"
        );
        assert_eq!(
            tf.string(req(hc, "path", &what), &what),
            "/healthz",
            "{what}: the health check path must be /healthz"
        );
    }
}

#[test]
fn mocks_and_admin_have_their_own_listeners_and_admin_is_limited_to_a_cidr_variable() {
    let tf = Tf::load();
    let listeners = tf.resources("aws_lb_listener");
    let forwards_to = |tg: &str| {
        listeners
            .iter()
            .filter(|(_, l)| {
                blocks(l, "default_action")
                    .any(|a| attr(a, "target_group_arn").is_some_and(|e| mentions(e, tg)))
            })
            .map(|(n, l)| (*n, *l))
            .collect::<Vec<_>>()
    };
    let mock = forwards_to("aws_lb_target_group.mock");
    let admin = forwards_to("aws_lb_target_group.admin");
    assert!(
        !mock.is_empty(),
        "no listener forwards to the mock target group"
    );
    assert_eq!(
        admin.len(),
        1,
        "the admin API needs exactly one listener of its own"
    );
    let tcp_mock = mock
        .iter()
        .find(|(_, l)| literal(tf.resolve(req(l, "protocol", "listener"))) == Some("TCP"))
        .expect("a plain TCP listener for mocks");
    assert_eq!(
        tf.number(
            req(tcp_mock.1, "port", "mock listener"),
            "mock listener port"
        ),
        80.0
    );
    let admin_port = tf.number(
        req(admin[0].1, "port", "admin listener"),
        "admin listener port",
    );
    assert!(
        mock.iter()
            .all(|(_, l)| attr(l, "port").map(|p| tf.number(p, "port")) != Some(admin_port)),
        "the admin listener's port {admin_port} must differ from the mock listeners'"
    );

    // Who may connect to the admin listener: only the CIDR variable.
    let sg_rules = tf.resources("aws_vpc_security_group_ingress_rule");
    let admin_rules: Vec<_> = sg_rules
        .iter()
        .filter(|(_, r)| {
            attr(r, "from_port").is_some_and(|p| mentions(p, "var.admin_listener_port"))
        })
        .collect();
    assert!(
        !admin_rules.is_empty(),
        "no ingress rule opens the admin listener's port"
    );
    for (name, r) in admin_rules {
        assert!(
            attr(r, "for_each").is_some_and(|e| mentions(e, "var.admin_allowed_cidrs"))
                && attr(r, "cidr_ipv4").is_some_and(|e| mentions(e, "each.value")),
            "aws_vpc_security_group_ingress_rule.{name} must take its CIDRs from var.admin_allowed_cidrs"
        );
    }
    let default = show(req(
        tf.variable("admin_allowed_cidrs"),
        "default",
        "variable admin_allowed_cidrs",
    ));
    assert!(
        !default.contains("0.0.0.0/0"),
        "admin_allowed_cidrs must not default to the whole internet"
    );
}

#[test]
fn at_least_two_azs_with_public_and_private_subnets_and_tasks_in_the_private_ones() {
    let tf = Tf::load();
    for kind in ["public", "private"] {
        let what = format!("aws_subnet.{kind}");
        let subnet = tf.resource("aws_subnet", kind);
        let count = tf.number(req(subnet, "count", &what), &format!("{what} count"));
        assert!(
            count >= 2.0,
            "{what}: at least 2 subnets (one per AZ), found count {count}"
        );
        let az = show(req(subnet, "availability_zone", &what));
        assert!(
            az.contains("local.azs") && az.contains("count.index"),
            "{what}: each subnet must be in its own AZ (availability_zone = local.azs[count.index]), found `{az}`"
        );
    }
    let validation = show(req(
        block(tf.variable("az_count"), "validation", "variable az_count"),
        "condition",
        "az_count validation",
    ));
    assert!(
        validation.contains(">= 2"),
        "variable az_count must refuse fewer than 2 AZs, found `{validation}`"
    );
    let nat = tf.resource("aws_nat_gateway", "main");
    assert!(mentions(
        req(nat, "subnet_id", "aws_nat_gateway.main"),
        "aws_subnet.public"
    ));

    let service = tf.resource("aws_ecs_service", "gateway");
    let net = block(service, "network_configuration", "aws_ecs_service.gateway");
    assert!(
        mentions(
            req(net, "subnets", "network_configuration"),
            "aws_subnet.private"
        ),
        "the service's tasks must run in the private subnets"
    );
    assert_eq!(
        attr(net, "assign_public_ip").and_then(boolean),
        Some(false),
        "tasks must not get public IPs"
    );
}

#[test]
fn scaling_tracks_emf_requests_per_task_and_cpu() {
    let tf = Tf::load();
    let target = tf.resource("aws_appautoscaling_target", "service");
    assert!(mentions(
        req(target, "min_capacity", "scaling target"),
        "var.min_tasks"
    ));
    assert!(mentions(
        req(target, "max_capacity", "scaling target"),
        "var.max_tasks"
    ));
    assert_eq!(
        tf.string(
            req(target, "scalable_dimension", "scaling target"),
            "scalable_dimension"
        ),
        "ecs:service:DesiredCount"
    );

    let mut tracking = Vec::new();
    for (n, p) in tf.resources("aws_appautoscaling_policy") {
        let ty = tf.string(req(p, "policy_type", "policy"), "policy_type");
        if let (Some(c), "TargetTrackingScaling") = (
            blocks(p, "target_tracking_scaling_policy_configuration").next(),
            ty,
        ) {
            tracking.push((n, c, ty));
        }
    }

    // CPU, the safety net.
    assert!(
        tracking.iter().any(
            |(_, c, _)| blocks(c, "predefined_metric_specification").any(|m| {
                attr(m, "predefined_metric_type").and_then(literal)
                    == Some("ECSServiceAverageCPUUtilization")
            })
        ),
        "no target-tracking policy on ECSServiceAverageCPUUtilization (the CPU safety net)"
    );

    // Requests per task, from the gateway's EMF metric.
    let requests: Vec<_> = tracking
        .iter()
        .filter_map(|(n, c, _)| {
            blocks(c, "customized_metric_specification")
                .next()
                .map(|m| (*n, m))
        })
        .collect();
    assert_eq!(
        requests.len(),
        1,
        "expected one target-tracking policy with a customized metric (requests per task), found {}",
        requests.len()
    );
    let (name, spec) = requests[0];
    let what = format!("aws_appautoscaling_policy.{name}");
    let mut stats = BTreeMap::new();
    let mut returned = Vec::new();
    for m in blocks(spec, "metrics") {
        let id = tf.string(req(m, "id", &what), "metrics id").to_string();
        if attr(m, "return_data").and_then(boolean) == Some(true) {
            returned.push((id.clone(), attr(m, "expression")));
        }
        if let Some(stat) = blocks(m, "metric_stat").next() {
            let metric = block(stat, "metric", &what);
            assert_eq!(
                tf.string(req(metric, "namespace", &what), "namespace"),
                emf::NAMESPACE,
                "{what}: the metric must be the gateway's EMF namespace"
            );
            assert_eq!(
                tf.string(req(metric, "metric_name", &what), "metric_name"),
                emf::METRIC,
                "{what}: the metric must be the gateway's EMF metric"
            );
            let dims: Vec<_> = blocks(metric, "dimensions").collect();
            assert_eq!(
                dims.len(),
                1,
                "{what}: the EMF metric has exactly one dimension"
            );
            assert_eq!(
                tf.string(req(dims[0], "name", &what), "dimension name"),
                emf::DIMENSION
            );
            assert!(
                mentions(req(dims[0], "value", &what), "var.name"),
                "{what}: the dimension value must be var.name, the ECHO_SERVICE_NAME the tasks publish under"
            );
            stats.insert(id, tf.string(req(stat, "stat", &what), "stat").to_string());
        }
    }
    assert!(
        stats.values().any(|s| s == "Sum") && stats.values().any(|s| s == "SampleCount"),
        "{what}: requests per task = Sum / SampleCount of the EMF metric (one sample per task a minute), found stats {stats:?}"
    );
    assert_eq!(
        returned.len(),
        1,
        "{what}: exactly one metric must return data"
    );
    let expr = returned[0]
        .1
        .map(|e| tf.string(e, "expression").to_string())
        .unwrap_or_else(|| panic!("{what}: the returned metric must be a metric-math expression"));
    let sum_id = stats.iter().find(|(_, s)| *s == "Sum").unwrap().0;
    let count_id = stats.iter().find(|(_, s)| *s == "SampleCount").unwrap().0;
    assert!(
        expr.contains(&format!("{sum_id} / {count_id}")),
        "{what}: the returned expression must divide the Sum by the SampleCount (per task), found `{expr}`"
    );
}

#[test]
fn task_publishes_the_emf_metric_under_the_name_scaling_tracks() {
    let tf = Tf::load();
    let env = named_entries(
        &tf,
        get(container(&tf), "environment").expect("container environment"),
    );
    let value = |k: &str| env.get(k).and_then(|o| get(o, "value"));
    assert_eq!(
        value("ECHO_EMF").map(|v| tf.string(v, "ECHO_EMF")),
        Some("1"),
        "the task must set ECHO_EMF=1, or no request metric reaches CloudWatch"
    );
    assert!(
        value("ECHO_SERVICE_NAME").is_some_and(|v| mentions(v, "var.name")),
        "ECHO_SERVICE_NAME must be var.name, the dimension value the scaling policy tracks"
    );
    assert!(
        value("ECHO_ADMIN_LISTEN")
            .is_some_and(|v| mentions(v, "9090") || mentions(v, "local.admin_port")),
        "the admin API needs its own listener (ECHO_ADMIN_LISTEN)"
    );
}

#[test]
fn shutdown_timings_fit_the_gateways_grace_period() {
    let tf = Tf::load();
    let grace = image_grace_secs();
    let declared = tf.number(
        req(
            tf.variable("shutdown_grace_secs"),
            "default",
            "variable shutdown_grace_secs",
        ),
        "shutdown_grace_secs",
    );
    assert_eq!(
        declared, grace,
        "variable shutdown_grace_secs ({declared}) must match [server] shutdown_grace_secs of the image's config ({grace})"
    );
    for (name, tg) in tf.resources("aws_lb_target_group") {
        let what = format!("aws_lb_target_group.{name}");
        let delay = tf.number(
            req(tg, "deregistration_delay", &what),
            "deregistration_delay",
        );
        assert!(
            delay < grace,
            "{what}: deregistration_delay ({delay} s) must be shorter than the gateway's shutdown grace ({grace} s)"
        );
    }
    let stop = tf.number(
        get(container(&tf), "stopTimeout").expect("container stopTimeout"),
        "stopTimeout",
    );
    assert!(
        stop > grace && stop <= 120.0,
        "the container's stopTimeout ({stop} s) must be longer than the shutdown grace ({grace} s) and at most Fargate's 120 s"
    );
}

#[test]
fn task_definition_logs_to_cloudwatch_and_health_checks_with_the_binary() {
    let tf = Tf::load();
    let td = tf.resource("aws_ecs_task_definition", "gateway");
    assert!(mentions(
        req(td, "requires_compatibilities", "task definition"),
        "FARGATE"
    ));
    assert_eq!(
        tf.string(req(td, "network_mode", "task definition"), "network_mode"),
        "awsvpc"
    );
    let c = container(&tf);
    let log = get(c, "logConfiguration").expect("container logConfiguration");
    assert_eq!(
        get(log, "logDriver").map(|d| tf.string(d, "logDriver")),
        Some("awslogs"),
        "the container must log with the awslogs driver (CloudWatch extracts EMF from the log group)"
    );
    let options = get(log, "options").expect("awslogs options");
    assert!(
        get(options, "awslogs-group")
            .is_some_and(|g| mentions(g, "aws_cloudwatch_log_group.gateway")),
        "awslogs-group must be the log group with retention"
    );
    let hc = get(c, "healthCheck").expect("container healthCheck");
    let cmd = show(get(hc, "command").expect("healthCheck command"));
    assert!(
        cmd.contains("\"echo-gateway\"") && cmd.contains("\"healthcheck\""),
        "the container health check must run `echo-gateway healthcheck`, found {cmd}"
    );

    let service = tf.resource("aws_ecs_service", "gateway");
    assert_eq!(
        tf.string(req(service, "launch_type", "service"), "launch_type"),
        "FARGATE"
    );
    let breaker = block(
        service,
        "deployment_circuit_breaker",
        "aws_ecs_service.gateway",
    );
    assert_eq!(
        attr(breaker, "enable").and_then(boolean),
        Some(true),
        "circuit breaker must be enabled"
    );
    assert_eq!(
        attr(breaker, "rollback").and_then(boolean),
        Some(true),
        "circuit breaker must roll back"
    );
    let lifecycle = block(service, "lifecycle", "aws_ecs_service.gateway");
    assert!(
        attr(lifecycle, "ignore_changes").is_some_and(|e| mentions(e, "desired_count")),
        "the service must ignore desired_count after creation (autoscaling owns it)"
    );
}

#[test]
fn every_log_group_has_a_retention() {
    let tf = Tf::load();
    let groups = tf.resources("aws_cloudwatch_log_group");
    assert!(!groups.is_empty(), "no CloudWatch log group");
    for (name, g) in groups {
        let what = format!("aws_cloudwatch_log_group.{name}");
        let days = tf.number(
            attr(g, "retention_in_days")
                .unwrap_or_else(|| panic!("{what} keeps logs forever: set retention_in_days")),
            "retention_in_days",
        );
        assert!(days > 0.0, "{what}: retention_in_days must be positive");
    }
}

#[test]
fn dashboard_and_alarms_cover_requests_health_tasks_and_cpu() {
    let tf = Tf::load();
    let dashboards = tf.resources("aws_cloudwatch_dashboard");
    assert_eq!(dashboards.len(), 1, "expected one dashboard");
    let body = show(req(dashboards[0].1, "dashboard_body", "dashboard"));
    for needle in [
        "local.emf_metric",
        "HealthyHostCount",
        "RunningTaskCount",
        "CPUUtilization",
        "ProcessedBytes",
    ] {
        assert!(body.contains(needle), "the dashboard should show {needle}");
    }
    let alarms: Vec<String> = tf
        .resources("aws_cloudwatch_metric_alarm")
        .iter()
        .map(|(n, a)| format!("{n}:{}", show(req(a, "metric_name", "alarm"))))
        .collect();
    for metric in [
        "UnHealthyHostCount",
        "TCP_Target_Reset_Count",
        "CPUUtilization",
    ] {
        assert!(
            alarms.iter().any(|a| a.contains(metric)),
            "no alarm on {metric} (alarms: {alarms:?})"
        );
    }
}

#[test]
fn ecr_scans_on_push_and_tags_are_immutable() {
    let tf = Tf::load();
    let repos = tf.resources("aws_ecr_repository");
    assert!(!repos.is_empty(), "no ECR repository");
    for (name, r) in repos {
        let what = format!("aws_ecr_repository.{name}");
        let scan = block(r, "image_scanning_configuration", &what);
        assert_eq!(
            attr(scan, "scan_on_push").and_then(boolean),
            Some(true),
            "{what}: scan_on_push must be true"
        );
        assert_eq!(
            tf.string(
                req(r, "image_tag_mutability", &what),
                "image_tag_mutability"
            ),
            "IMMUTABLE",
            "{what}: tags must be immutable"
        );
    }
}

#[test]
fn redis_when_present_is_encrypted_private_and_reachable_from_tasks_only() {
    let tf = Tf::load();
    for (name, rg) in tf.resources("aws_elasticache_replication_group") {
        let what = format!("aws_elasticache_replication_group.{name}");
        for key in ["at_rest_encryption_enabled", "transit_encryption_enabled"] {
            assert_eq!(
                attr(rg, key).and_then(boolean),
                Some(true),
                "{what}: {key} must be true"
            );
        }
        assert!(
            attr(rg, "auth_token").is_some(),
            "{what}: an AUTH token is required"
        );
        let count = show(req(rg, "count", &what));
        assert!(
            count.contains("var.enable_redis"),
            "{what} must be optional (count on var.enable_redis)"
        );
    }
    for (name, sg) in tf.resources("aws_elasticache_subnet_group") {
        assert!(
            mentions(req(sg, "subnet_ids", "subnet group"), "aws_subnet.private"),
            "aws_elasticache_subnet_group.{name} must use the private subnets"
        );
    }
    for (name, r) in tf.resources("aws_vpc_security_group_ingress_rule") {
        if attr(r, "security_group_id").is_some_and(|e| mentions(e, "aws_security_group.redis")) {
            assert!(
                attr(r, "referenced_security_group_id").is_some_and(|e| mentions(e, "aws_security_group.tasks"))
                    && attr(r, "cidr_ipv4").is_none(),
                "aws_vpc_security_group_ingress_rule.{name}: Redis must accept the tasks' security group only"
            );
        }
    }
    if !tf.resources("aws_elasticache_replication_group").is_empty() {
        let secrets = named_entries(
            &tf,
            get(container(&tf), "secrets").expect("container secrets"),
        );
        assert!(
            secrets.contains_key("ECHO_REDIS_URL"),
            "with Redis, the task must get ECHO_REDIS_URL (from a secret: it carries the AUTH token)"
        );
        let env = named_entries(
            &tf,
            get(container(&tf), "environment").expect("container environment"),
        );
        assert!(
            env.contains_key("ECHO_STORE"),
            "with Redis, the task must set ECHO_STORE=redis"
        );
        assert!(
            !env.contains_key("ECHO_REDIS_URL"),
            "ECHO_REDIS_URL carries a password: secrets, not environment"
        );
    }
}

#[test]
fn admin_token_is_never_plain_text() {
    let tf = Tf::load();
    let c = container(&tf);
    let env = named_entries(&tf, get(c, "environment").expect("container environment"));
    assert!(
        !env.contains_key("ECHO_ADMIN_TOKEN"),
        "ECHO_ADMIN_TOKEN must not be a plain environment variable of the task definition"
    );
    let secrets = named_entries(&tf, get(c, "secrets").expect("container secrets"));
    let from = secrets
        .get("ECHO_ADMIN_TOKEN")
        .and_then(|o| get(o, "valueFrom"))
        .expect("the container's `secrets` must inject ECHO_ADMIN_TOKEN");
    let resolved = tf.resolve(from);
    assert!(
        literal(resolved).is_none(),
        "ECHO_ADMIN_TOKEN's valueFrom must reference a secret resource or variable, found `{}`",
        show(resolved)
    );
    assert!(
        mentions(resolved, "aws_secretsmanager_secret")
            || mentions(resolved, "var.admin_token_secret_arn"),
        "ECHO_ADMIN_TOKEN must come from Secrets Manager, found `{}`",
        show(resolved)
    );
    // No token, password or secret value written into the configuration.
    for (name, v) in tf.variables() {
        let lower = name.to_lowercase();
        if (lower.contains("token") || lower.contains("password")) && !lower.ends_with("_arn") {
            let default = attr(v, "default").and_then(literal).unwrap_or("");
            assert!(
                default.is_empty(),
                "variable {name} must not have a token as its default"
            );
        }
    }
    for (_, b) in &tf.blocks {
        check_no_literal_secret(
            &b.body,
            &format!("{} {:?}", b.identifier.as_str(), b.labels),
        );
    }
}

fn check_no_literal_secret(body: &Body, what: &str) {
    for a in body.attributes() {
        let key = a.key.as_str();
        if matches!(key, "secret_string" | "auth_token" | "password" | "token") {
            assert!(
                literal(&a.expr).is_none(),
                "{what}: `{key}` must not be a literal string (use a generated or passed-in secret)"
            );
        }
    }
    for b in body.blocks() {
        check_no_literal_secret(&b.body, what);
    }
}

#[test]
fn iam_task_role_has_no_permissions_and_roles_are_separate() {
    let tf = Tf::load();
    let td = tf.resource("aws_ecs_task_definition", "gateway");
    let exec = show(req(td, "execution_role_arn", "task definition"));
    let task = show(req(td, "task_role_arn", "task definition"));
    assert_ne!(
        exec, task,
        "the execution role and the task role must be different roles"
    );
    for ty in ["aws_iam_role_policy", "aws_iam_role_policy_attachment"] {
        for (name, p) in tf.resources(ty) {
            let role = show(req(p, "role", "policy"));
            assert!(
                !role.contains("aws_iam_role.task"),
                "{ty}.{name}: the gateway calls no AWS API, its task role needs no permissions"
            );
            if let Some(arn) = attr(p, "policy_arn") {
                assert!(
                    !mentions(arn, "AdministratorAccess"),
                    "{ty}.{name}: no administrator policy"
                );
            }
        }
    }
}

#[test]
fn dockerfile_matches_what_the_task_definition_expects() {
    let tf = Tf::load();
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("read Dockerfile");
    let data_dir = tf.string(tf.local("data_dir"), "local.data_dir");
    let volume = dockerfile
        .lines()
        .find(|l| l.starts_with("VOLUME"))
        .expect("the Dockerfile declares VOLUMEs for the read-only root file system");
    assert!(
        volume.contains(&format!("\"{data_dir}\"")) && volume.contains("\"/tmp\""),
        "the Dockerfile's VOLUME must list {data_dir} and /tmp, the task's mount points"
    );
    let first_build = dockerfile
        .find("cargo build")
        .expect("the Dockerfile runs cargo build");
    assert!(
        dockerfile
            .find("COPY benches")
            .is_some_and(|i| i < first_build),
        "the dependency layer's cargo build needs every [[bench]] file Cargo.toml declares: COPY benches before it"
    );
    assert!(
        dockerfile.contains("ENTRYPOINT [\"echo-gateway\"]"),
        "exec-form ENTRYPOINT"
    );
    assert!(
        dockerfile.contains("EXPOSE 8080 9090"),
        "the image exposes 8080 and 9090"
    );
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !user.contains("root") && !user.contains(" 0"),
        "the image must not run as root: {user}"
    );
    assert!(Path::new(&repo().join("config/echo.toml")).exists());
}
