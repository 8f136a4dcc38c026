//! The report of a run as text, one section per part of the JSON report.

use serde_json::Value;

/// The elements of the array at `v` (none if it is not one).
fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The entries of the object at `v` (none if it is not one).
fn entries(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flatten()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(super) fn text(r: &Value) -> String {
    let mut s = format!("\n{}\n{}\n", str_of(&r["title"]), "=".repeat(72));
    s.push_str(&nodes(r));
    s.push_str(&service_levels(r));
    s.push_str(&statements(r));
    s.push_str(&invoices(r));
    s.push_str(&reviews(r));
    s.push_str(&ledgers(r));
    s.push_str(&run(r));
    s
}

fn nodes(r: &Value) -> String {
    let mut s = String::from("\nNodes\n");
    for n in items(&r["nodes"]) {
        s.push_str(&format!(
            "  {:<18} devices {:>3}  uplinks accepted {:>5}  joins {:>3}  delivered {:>5} (expected {})\n",
            str_of(&n["member"]),
            n["devices"],
            n["uplinks_accepted"],
            n["joins_accepted"],
            n["delivered_to_application"],
            n["expected_at_home"]
        ));
        s.push_str(&node_details(n));
    }
    s
}

/// A node's roaming each way, downlinks through peers and refusals.
fn node_details(n: &Value) -> String {
    let mut s = String::new();
    for (peer, v) in entries(&n["roamed_out_as_visited"]) {
        s.push_str(&format!("      carried for {peer}: {v} frames\n"));
    }
    for (peer, v) in entries(&n["roamed_in_as_home"]) {
        s.push_str(&format!("      received through {peer}: {v} frames\n"));
    }
    for (peer, v) in entries(&n["downlinks_through_peers"]) {
        s.push_str(&format!("      downlinks sent through {peer}'s gateways: {v}\n"));
    }
    for (k, v) in entries(&n["lns_rejected"]) {
        s.push_str(&format!("      network server refused {v} frames: {k}\n"));
    }
    for f in items(&n["refusals"]) {
        s.push_str(&format!(
            "      refused ({} side, {}, {}): {} x {}\n",
            f["side"], f["peer"], f["flow"], f["count"], f["reason"]
        ));
    }
    s
}

fn service_levels(r: &Value) -> String {
    let mut s = String::from("\nService levels (share of devices heard)\n");
    for x in items(&r["sla"]) {
        s.push_str(&format!(
            "  {:<18} {} devices: {}% within 24 h (target 90), {}% within 14 days (target 95)\n",
            str_of(&x["member"]),
            x["devices"],
            x["heard_24h_pct"],
            x["heard_14d_pct"]
        ));
    }
    s
}

fn statements(r: &Value) -> String {
    let mut s = String::from("\nUsage statements\n");
    for a in items(&r["statements"]) {
        let st = a["statements"].as_array().cloned().unwrap_or_default();
        let count = |k: &str| st.iter().filter(|x| x["status"] == k).count();
        let frames: u64 = st.iter().filter_map(|x| x["frames"].as_u64()).sum();
        s.push_str(&format!(
            "  {}: {} daily statements signed by {}, {} countersigned by {}, {} disputed; {} frames\n",
            str_of(&a["agreement"]),
            st.len(),
            a["host"],
            count("countersigned"),
            a["guest"],
            count("disputed"),
            frames
        ));
    }
    s
}

/// An amount in cents of `v` as euros.
fn euros(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0) / 100.0
}

fn invoices(r: &Value) -> String {
    let mut s = String::from("\nInvoices\n");
    for i in items(&r["invoices"]) {
        let inv = &i["invoice"];
        s.push_str(&format!(
            "  {} {}: {} objects, {:.2} EUR excl. VAT + {:.2} VAT = {:.2} EUR, due {}; accepted: {} (signed by {})\n",
            str_of(&i["agreement"]),
            str_of(&inv["period_start"]),
            inv["lines"][0]["quantity"],
            euros(&inv["amount_excl_vat"]),
            euros(&inv["vat"]),
            euros(&inv["amount_incl_vat"]),
            str_of(&inv["due_date"]),
            i["accepted"],
            i["signed_by"]
        ));
    }
    s
}

fn reviews(r: &Value) -> String {
    let mut s = String::from("\nCommittee reviews\n");
    for v in items(&r["reviews"]) {
        s.push_str(&format!(
            "  {} {}: {} of {} declared devices seen, signed by {} — {}\n",
            str_of(&v["agreement"]),
            str_of(&v["quarter"]),
            v["devices_seen"],
            v["devices_declared"],
            v["signed_by"],
            str_of(&v["markdown"])
        ));
    }
    s
}

fn ledgers(r: &Value) -> String {
    let mut s = String::from("\nLedgers (verified offline against the roster's keys)\n");
    for l in items(&r["ledgers"]) {
        s.push_str(&format!(
            "  {:<18} {} records: {} — {}\n",
            str_of(&l["member"]),
            l["records"],
            if l["verified"] == true {
                "signatures and chain verified".to_string()
            } else {
                format!("FAILED: {}", l["error"])
            },
            str_of(&l["export"])
        ));
    }
    s
}

fn run(r: &Value) -> String {
    format!(
        "\nRun: {} joins, {} Class C downlinks requested, {} uplinks lost while their only node was down\n\
         Data dirs under {}; roster {}\n",
        r["run"]["joins"],
        r["run"]["downlinks_requested"],
        r["run"]["lost_to_outage"],
        str_of(&r["base"]),
        str_of(&r["roster"])
    )
}
