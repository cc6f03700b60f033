//! A related collection's listRule on every relation hop of a non-superuser's filter and sort
//! (PocketBase's `updateQueryWithCollectionListRule`). Expected answers follow PocketBase
//! 0.40.6 on the same shapes: rows whose joined record the caller may not list drop out of
//! the filter, and a sort over such a relation drops them too.

use super::*;

impl Fixture {
    /// Ids of posts for a list query: the posts rule (as a rule), the caller's filter and
    /// sort, translated together as the list API does.
    pub(super) fn list(
        &self,
        rule: &str,
        filter: &str,
        sort: &str,
        caller: Caller,
    ) -> Result<String, FilterError> {
        let request = self.request(caller);
        let fq = self.query("posts", caller, Some(&request));
        let rq = Query {
            allow_request_refs: true,
            allow_hidden: true,
            ..fq
        };
        let (rule, filter) = (
            (!rule.is_empty()).then(|| parse(rule)).transpose()?,
            (!filter.is_empty()).then(|| parse(filter)).transpose()?,
        );
        let mut parts = Vec::new();
        if let Some(r) = &rule {
            parts.push((r, &rq));
        }
        if let Some(f) = &filter {
            parts.push((f, &fq));
        }
        let sql = list_sql(&parts, sort, &fq)?;
        let order = if sql.order_sql.is_empty() {
            "id".to_string()
        } else {
            sql.order_sql
        };
        let full = format!(
            "SELECT id FROM `posts` WHERE {} ORDER BY {order}",
            sql.where_sql
        );
        let params = sql.params.iter().chain(&sql.order_params).map(param_to_db);
        let mut stmt = self
            .conn
            .prepare(&full)
            .unwrap_or_else(|e| panic!("{e}\n{full}"));
        let ids: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(params), |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}\n{full}"))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{e}\n{full}"));
        Ok(ids.join(","))
    }
}

/// users may only list themselves, as PocketBase's default `users` listRule.
fn fixture_own_users() -> Fixture {
    let mut fx = Fixture::new();
    fx.set_list_rule("users", Some("id = @request.auth.id"));
    fx
}

#[test]
fn a_guest_learns_nothing_about_users_it_may_not_list() {
    let fx = fixture_own_users();
    let guest = |f: &str| fx.list("", f, "", Caller::Client);
    // Without the listRule these would reveal bob's, carol's and dave's verified flags.
    assert_eq!(guest("author.verified = false"), Ok(String::new()));
    assert_eq!(guest("author.verified = true"), Ok(String::new()));
    // A missing relation still lets the other side of an `||` through (PocketBase's id='').
    assert_eq!(
        guest("author.verified = true || title = 'p2'"),
        Ok("p2".into())
    );
    assert_eq!(guest("editors.name ?= 'bob'"), Ok(String::new()));
    // No join, no rule: the relation column itself is the caller's to filter.
    assert_eq!(guest("author = 'bob'"), Ok("p3".into()));
    assert_eq!(guest("author.id = 'bob'"), Ok("p3".into()));
    // Sorting by a related field drops the rows whose related record is not listable, so the
    // order cannot leak it either (PocketBase: only the post without an author remains).
    assert_eq!(
        fx.list("", "", "-author.email", Caller::Client),
        Ok("p2".into())
    );
    assert_eq!(
        fx.list("", "title != ''", "author.name", Caller::Client),
        Ok("p2".into())
    );
}

#[test]
fn a_signed_in_user_sees_only_the_related_records_it_may_list() {
    let fx = fixture_own_users();
    let alice = |f: &str| fx.list("", f, "", Caller::User("alice"));
    assert_eq!(alice("author.verified = true"), Ok("p1".into()));
    assert_eq!(alice("author.verified = false"), Ok(String::new()));
    assert_eq!(alice("editors.name ?= 'alice'"), Ok("p1".into()));
    assert_eq!(alice("editors.name ?= 'bob'"), Ok(String::new()));
    // The editor matched must be listable: bob (p4) is not, alice (p1) is.
    assert_eq!(
        alice("editors.name ?= 'bob' || author.name = 'alice'"),
        Ok("p1".into())
    );
    // p1 keeps alice as a listable editor; p2 has none; p3..p5 only unlistable ones.
    assert_eq!(
        fx.list("", "", "-editors.name,id", Caller::User("alice")),
        Ok("p1,p2".into())
    );
}

#[test]
fn the_sort_value_comes_from_listable_records_only() {
    let mut fx = Fixture::new();
    fx.set_list_rule("users", Some("age >= 30"));
    // Listable: alice (30) and carol (40). p1's smallest listable editor age is 30 (bob's 20
    // does not count), p4's is carol's 40 (dave's 0 does not); p5 (dave only) drops out.
    assert_eq!(
        fx.list("", "", "editors.age,id", Caller::Client),
        Ok("p2,p1,p3,p4".into())
    );
    // A superuser sorts by every editor.
    assert_eq!(
        fx.list("", "", "editors.age,id", Caller::Superuser),
        Ok("p2,p4,p5,p1,p3".into())
    );
}

#[test]
fn back_relations_and_rule_joins_are_checked_too() {
    let mut fx = Fixture::new();
    fx.set_list_rule("comments", Some("user = @request.auth.id"));
    let as_user = |who: Caller, f: &str| fx.list("", f, "", who);
    assert_eq!(
        as_user(Caller::Client, "comments_via_post.message ?= 'c1'"),
        Ok(String::new())
    );
    assert_eq!(
        as_user(Caller::User("alice"), "comments_via_post.message ?= 'c1'"),
        Ok("p1".into())
    );
    // c2 is bob's.
    assert_eq!(
        as_user(Caller::User("alice"), "comments_via_post.message ?= 'c2'"),
        Ok(String::new())
    );
    // The collection's own rule does not bring related listRules in (it runs as a rule), but
    // a client filter on the same path does, and shares the rule's join (PocketBase).
    fx.set_list_rule("users", Some("id = @request.auth.id"));
    assert_eq!(
        fx.list("author.name != 'nobody'", "", "", Caller::Client),
        Ok(ALL.into())
    );
    assert_eq!(
        fx.list(
            "author.name != 'nobody'",
            "author.name != 'x'",
            "",
            Caller::Client
        ),
        Ok("p2".into())
    );
    // A superuser's filter is never narrowed.
    assert_eq!(
        fx.list("", "author.verified = false", "", Caller::Superuser),
        Ok("p3,p4,p5".into())
    );
}

#[test]
fn a_superusers_only_collection_cannot_be_joined_by_others() {
    let mut fx = Fixture::new();
    fx.set_list_rule("users", None);
    let guest = |f: &str, s: &str| fx.list("", f, s, Caller::Client);
    assert!(matches!(
        guest("author.name = 'x'", ""),
        Err(FilterError::Invalid(_))
    ));
    assert!(matches!(
        guest("", "author.name"),
        Err(FilterError::Invalid(_))
    ));
    assert!(matches!(
        guest("editors.name ?= 'x'", ""),
        Err(FilterError::Invalid(_))
    ));
    assert_eq!(guest("author = 'bob'", ""), Ok("p3".into()));
    assert_eq!(guest("author.id = 'bob'", ""), Ok("p3".into()));
    assert_eq!(
        fx.list("", "author.name = 'bob'", "", Caller::Superuser),
        Ok("p3".into())
    );
}
