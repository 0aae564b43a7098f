//! `tribune catalog datacenters|nodes|services`, matching `consul catalog`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::flags::{FlagSpec, Parsed};
use super::{
    columnize, connect, fail, get_json, group_help, map_flag, parse_command, tab_align, Http, Ui,
};
use crate::client::percent_encode_path;

const CATALOG_HELP: &str = r#"
Usage: tribune catalog <subcommand> [options] [args]

  This command has subcommands for interacting with the catalog: the
  cluster-wide registry of nodes and services.

  List all datacenters:

      $ tribune catalog datacenters

  List all nodes:

      $ tribune catalog nodes

  List all services:

      $ tribune catalog services
"#;

const SUBCOMMANDS: &[(&str, &str)] = &[
    ("datacenters", "Lists all known datacenters"),
    ("nodes", "Lists all nodes in the given datacenter"),
    ("services", "Lists all registered services in a datacenter"),
];

pub(super) fn run(args: &[String], ui: &mut Ui) -> i32 {
    let Some((sub, rest)) = args.split_first() else {
        return group_help(args, CATALOG_HELP, SUBCOMMANDS, ui);
    };
    match sub.as_str() {
        "datacenters" => datacenters(rest, ui),
        "nodes" => nodes(rest, ui),
        "services" => services(rest, ui),
        _ => group_help(args, CATALOG_HELP, SUBCOMMANDS, ui),
    }
}

/// Parses flags, rejects positionals, and connects: the common prelude of
/// the catalog commands, none of which take arguments.
fn prelude(
    args: &[String],
    own: &[FlagSpec],
    help: &str,
    ui: &mut Ui,
) -> Result<(Parsed, Http), i32> {
    let parsed = parse_command(args, own, help, ui)?;
    if !parsed.positional.is_empty() {
        ui.error(&format!(
            "Too many arguments (expected 0, got {})",
            parsed.positional.len()
        ));
        return Err(1);
    }
    let http = connect(&parsed, ui)?;
    Ok((parsed, http))
}

const DATACENTERS_HELP: &str = r#"
Usage: tribune catalog datacenters [options]

  Retrieves the list of all known datacenters, sorted in ascending order
  based on the estimated median round trip time from the servers in this
  datacenter to the servers in the other datacenters.

      $ tribune catalog datacenters
"#;

fn datacenters(args: &[String], ui: &mut Ui) -> i32 {
    let (_, http) = or_exit!(prelude(args, &[], DATACENTERS_HELP, ui));
    match get_json::<Option<Vec<String>>>(&http, "/v1/catalog/datacenters", &[]) {
        Ok(list) => {
            for dc in list.flatten().unwrap_or_default() {
                ui.info(&dc);
            }
            0
        }
        Err(err) => {
            // Consul prints this but still exits 0; a failure should fail.
            ui.error(&format!("Error listing datacenters: {err}"));
            1
        }
    }
}

/// A catalog node (`/v1/catalog/nodes`), or the node part of a catalog
/// service entry (`/v1/catalog/service/:name`, where `Meta` is `NodeMeta`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Node {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(alias = "NodeMeta")]
    meta: Option<BTreeMap<String, String>>,
}

const NODES_HELP: &str = r#"
Usage: tribune catalog nodes [options]

  Retrieves the list of nodes registered in a given datacenter. By default,
  the datacenter of the local agent is queried.

      $ tribune catalog nodes

  To print detailed information including full node IDs, tagged addresses,
  and metadata information:

      $ tribune catalog nodes -detailed

  To list nodes which are running a particular service:

      $ tribune catalog nodes -service=web

Command Options

  -detailed       Output detailed information about the nodes.
  -filter=<expr>  Filter to use with the request.
  -near=<node>    Sort by estimated round-trip time from that node
                  ("_agent" means this agent's node).
  -node-meta=<key=value>
                  Only nodes with this metadata; may be repeated.
  -service=<name> Only nodes providing the given service.
"#;

const NODES_FLAGS: &[FlagSpec] = &[
    FlagSpec::switch("detailed"),
    FlagSpec::value("filter"),
    FlagSpec::value("near"),
    FlagSpec::value("node-meta"),
    FlagSpec::value("service"),
];

fn nodes(args: &[String], ui: &mut Ui) -> i32 {
    let (parsed, http) = or_exit!(prelude(args, NODES_FLAGS, NODES_HELP, ui));
    let extra = match filter_params(&parsed, true) {
        Ok(extra) => extra,
        Err(err) => return super::usage_error(ui, &err, NODES_HELP),
    };
    let service = parsed.value("service").filter(|s| !s.is_empty());
    let (path, context) = match service {
        Some(name) => (
            format!("/v1/catalog/service/{}", percent_encode_path(name)),
            "Error listing nodes for service",
        ),
        None => ("/v1/catalog/nodes".to_string(), "Error listing nodes"),
    };
    let nodes: Vec<Node> = match get_json::<Option<Vec<Node>>>(&http, &path, &extra) {
        Ok(nodes) => nodes.flatten().unwrap_or_default(),
        Err(err) => return fail(ui, &format!("{context}: {err}")),
    };
    if nodes.is_empty() {
        ui.error("No nodes match the given query - try expanding your search.");
        return 0;
    }
    ui.info(&render_nodes(&nodes, parsed.flag("detailed")));
    0
}

/// `node-meta` (as `key:value`), `filter` and, for nodes, `near`.
fn filter_params(
    parsed: &Parsed,
    with_near: bool,
) -> Result<Vec<(&'static str, Option<String>)>, String> {
    let mut extra = Vec::new();
    for (key, value) in map_flag(parsed, "node-meta")? {
        extra.push(("node-meta", Some(format!("{key}:{value}"))));
    }
    if let Some(filter) = parsed.value("filter").filter(|f| !f.is_empty()) {
        extra.push(("filter", Some(filter.to_string())));
    }
    if with_near {
        if let Some(near) = parsed.value("near").filter(|n| !n.is_empty()) {
            extra.push(("near", Some(near.to_string())));
        }
    }
    Ok(extra)
}

/// `key=value` pairs sorted by key, joined by ", " (Consul's mapToKV).
fn map_to_kv(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|map| {
        map.iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
    .unwrap_or_default()
}

/// The node table. Without `-detailed`, IDs are cut at the first `-` (the
/// first UUID group), as Consul does to keep the table narrow.
fn render_nodes(nodes: &[Node], detailed: bool) -> String {
    let mut rows = Vec::with_capacity(nodes.len() + 1);
    let mut header = vec!["Node", "ID", "Address", "DC"];
    if detailed {
        header.extend(["TaggedAddresses", "Meta"]);
    }
    rows.push(header.into_iter().map(str::to_string).collect());
    for node in nodes {
        let id = match node.id.find('-') {
            Some(cut) if cut > 0 && !detailed => node.id[..cut].to_string(),
            _ => node.id.clone(),
        };
        let mut row = vec![
            node.node.clone(),
            id,
            node.address.clone(),
            node.datacenter.clone(),
        ];
        if detailed {
            row.push(map_to_kv(node.tagged_addresses.as_ref()));
            row.push(map_to_kv(node.meta.as_ref()));
        }
        rows.push(row);
    }
    columnize(&rows)
}

/// `/v1/catalog/services`: service name to its tags (tags may be `null`).
type ServiceTags = BTreeMap<String, Option<Vec<String>>>;

/// The part of `/v1/catalog/node/:node` that `catalog services -node` uses.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NodeServices {
    services: Option<BTreeMap<String, NodeService>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct NodeService {
    service: String,
    tags: Option<Vec<String>>,
}

const SERVICES_HELP: &str = r#"
Usage: tribune catalog services [options]

  Retrieves the list of services registered in a given datacenter. By
  default, the datacenter of the local agent is queried.

      $ tribune catalog services

  To include the services' tags in the output:

      $ tribune catalog services -tags

  To list services which run on a particular node:

      $ tribune catalog services -node=web

Command Options

  -filter=<expr>  Filter to use with the request.
  -node=<name>    Node for which to list services.
  -node-meta=<key=value>
                  Only services on nodes with this metadata; may be repeated.
  -tags           Display each service's tags as a comma-separated list.
"#;

const SERVICES_FLAGS: &[FlagSpec] = &[
    FlagSpec::value("filter"),
    FlagSpec::value("node"),
    FlagSpec::value("node-meta"),
    FlagSpec::switch("tags"),
];

fn services(args: &[String], ui: &mut Ui) -> i32 {
    let (parsed, http) = or_exit!(prelude(args, SERVICES_FLAGS, SERVICES_HELP, ui));
    let extra = match filter_params(&parsed, false) {
        Ok(extra) => extra,
        Err(err) => return super::usage_error(ui, &err, SERVICES_HELP),
    };
    let services = match parsed.value("node").filter(|n| !n.is_empty()) {
        Some(node) => {
            let path = format!("/v1/catalog/node/{}", percent_encode_path(node));
            // An unknown node answers 200 with a JSON `null`.
            get_json::<Option<NodeServices>>(&http, &path, &extra)
                .map(|found| services_of_node(found.flatten().unwrap_or_default()))
                .map_err(|err| format!("Error listing services for node: {err}"))
        }
        None => get_json::<Option<ServiceTags>>(&http, "/v1/catalog/services", &extra)
            .map(|found| {
                found
                    .flatten()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, tags)| (name, tags.unwrap_or_default()))
                    .collect()
            })
            .map_err(|err| format!("Error listing services: {err}")),
    };
    let services = match services {
        Ok(services) => services,
        Err(err) => return fail(ui, &err),
    };
    if services.is_empty() {
        ui.error("No services match the given query - try expanding your search.");
        return 0;
    }
    ui.info(&render_services(services, parsed.flag("tags")));
    0
}

/// Groups a node's service instances by service name, concatenating tags.
fn services_of_node(node: NodeServices) -> BTreeMap<String, Vec<String>> {
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for instance in node.services.unwrap_or_default().into_values() {
        by_name
            .entry(instance.service)
            .or_default()
            .extend(instance.tags.unwrap_or_default());
    }
    by_name
}

/// Names sorted, one per line; with `-tags`, a tabwriter-aligned second
/// column of sorted, comma-joined tags. Consul trims the whole block, so
/// only the very last line loses trailing padding; that is reproduced.
fn render_services(services: BTreeMap<String, Vec<String>>, with_tags: bool) -> String {
    if !with_tags {
        return services.into_keys().collect::<Vec<_>>().join("\n");
    }
    let rows: Vec<Vec<String>> = services
        .into_iter()
        .map(|(name, mut tags)| {
            tags.sort();
            vec![name, tags.join(",")]
        })
        .collect();
    tab_align(&rows, 6).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, id: &str) -> Node {
        Node {
            id: id.to_string(),
            node: name.to_string(),
            address: "127.0.0.1".to_string(),
            datacenter: "dc1".to_string(),
            tagged_addresses: Some(BTreeMap::from([
                ("wan".to_string(), "10.0.0.1".to_string()),
                ("lan".to_string(), "127.0.0.1".to_string()),
            ])),
            meta: None,
        }
    }

    #[test]
    fn node_table_shortens_ids_unless_detailed() {
        let nodes = vec![
            node("server-1", "9f1ab4b2-0b33-40d9-94e4-e0cda06b0a5b"),
            node("n2", ""),
        ];
        assert_eq!(
            render_nodes(&nodes, false),
            "Node      ID        Address    DC\n\
             server-1  9f1ab4b2  127.0.0.1  dc1\n\
             n2                  127.0.0.1  dc1"
        );
        // Like Go's columnize, an empty last cell still follows the glue.
        let detailed = render_nodes(&nodes[..1], true);
        assert_eq!(
            detailed,
            "Node      ID                                    Address    DC   TaggedAddresses              Meta\n\
             server-1  9f1ab4b2-0b33-40d9-94e4-e0cda06b0a5b  127.0.0.1  dc1  lan=127.0.0.1, wan=10.0.0.1  "
        );
    }

    #[test]
    fn service_list_sorted_with_optional_tags() {
        let services = BTreeMap::from([
            ("web".to_string(), vec!["v2".to_string(), "v1".to_string()]),
            ("consul".to_string(), Vec::new()),
            ("db".to_string(), vec!["primary".to_string()]),
        ]);
        assert_eq!(render_services(services.clone(), false), "consul\ndb\nweb");
        assert_eq!(
            render_services(services, true),
            "consul      \ndb          primary\nweb         v1,v2"
        );
    }

    #[test]
    fn node_services_are_grouped_by_name() -> Result<(), String> {
        let json = br#"{"Node":{"Node":"n1"},"Services":{
            "web-1":{"ID":"web-1","Service":"web","Tags":["b"]},
            "web-2":{"ID":"web-2","Service":"web","Tags":["a"]},
            "db":{"ID":"db","Service":"db","Tags":null}}}"#;
        let parsed: NodeServices = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let grouped = services_of_node(parsed);
        assert_eq!(grouped.get("web").map(Vec::len), Some(2));
        assert_eq!(grouped.get("db"), Some(&Vec::new()));
        Ok(())
    }
}
