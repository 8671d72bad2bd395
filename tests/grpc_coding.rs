//! The Coder service over a real tonic connection: topics, models,
//! synchronous coding with the shipped models, and every request error of
//! the mapping table in docs/grpc.md.

mod grpc_support;

use grpc_support::*;
use occoder::proto::v1 as pb;
use occoder::server::REQUEST_ID_HEADER;
use occoder_auth::Role;
use tonic::Code;
use tonic_types::StatusExt;

const GUIDE_OCCP: &str = "software developer";
const GUIDE_TASKS: &str = "writing code and unit tests";
/// An ANZSCO record that codes to 261313 Software Engineer. The guide's
/// example codes within unit group 2613 for ANZSCO, because ANZSCO 2022
/// lists "Software Developer" under 261312 Developer Programmer.
const ANZSCO_OCCP: &str = "software engineer";
const ANZSCO_TASKS: &str = "designing and building software systems";

async fn public_token() -> String {
    shared_server().token_for(Role::Public).await
}

#[tokio::test]
async fn list_topics_returns_both() {
    let server = shared_server();
    let token = public_token().await;

    let topics = server.coder().await.list_topics(authorized(pb::ListTopicsRequest {}, &token)).await.unwrap().into_inner();

    let names: Vec<&str> = topics.topics.iter().map(|topic| topic.uri_name.as_str()).collect();
    assert_eq!(names, ["osca", "anzsco"]);
    assert_eq!(topics.topics[0].full_name, "OSCA - Occupation Standard Classification for Australia");
}

#[tokio::test]
async fn describe_topic_gives_input_format() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;

    let topic = coder
        .describe_topic(authorized(pb::DescribeTopicRequest { topic: "OSCA".into() }, &token))
        .await
        .unwrap()
        .into_inner();
    let latest = coder
        .get_latest_model(authorized(pb::GetLatestModelRequest { topic: "osca".into() }, &token))
        .await
        .unwrap()
        .into_inner();

    assert_eq!(topic.uri_name, "osca");
    assert_eq!(topic.topic_version, "2024");
    assert_eq!(topic.input_format, ["occp_text", "tasks_text"]);
    assert_eq!(topic.latest_model_id, latest.model_id);
}

#[tokio::test]
async fn list_models_and_latest_agree() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;

    for topic in ["osca", "anzsco"] {
        let models = coder
            .list_models(authorized(pb::ListModelsRequest { topic: topic.into() }, &token))
            .await
            .unwrap()
            .into_inner()
            .models;
        let latest = coder
            .get_latest_model(authorized(pb::GetLatestModelRequest { topic: topic.into() }, &token))
            .await
            .unwrap()
            .into_inner();

        assert_eq!(models.len(), 1, "{topic}");
        assert_eq!(models[0], latest);
        assert_eq!(latest.topic, topic);
        assert_eq!(latest.model_type, "hsvm");
        assert!(uuid::Uuid::parse_str(&latest.model_id).is_ok(), "{}", latest.model_id);
        assert!(latest.model_release_date.is_some());
    }
}

#[tokio::test]
async fn guide_example_codes_to_software_engineer() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;

    for (topic, code) in [("osca", "273333"), ("anzsco", "2613")] {
        let response = coder
            .code(authorized(code_one(topic, record(GUIDE_OCCP, GUIDE_TASKS)), &token))
            .await
            .unwrap()
            .into_inner();

        assert_eq!(response.responses.len(), 1);
        let coded = &response.responses[0];
        assert_eq!(coded.code_status(), pb::CodeStatus::Successful, "{topic}: {coded:?}");
        assert!(coded.result[0].code_category.starts_with(code), "{topic}: {coded:?}");
        assert!(coded.result.len() <= 3, "{topic}: default of 3 codes at most");
        assert!(coded.suggestions.is_empty(), "{topic}");
        assert_eq!(coded.record_id, None);
        assert_eq!(coded.input, Some(record(GUIDE_OCCP, GUIDE_TASKS)));
    }
}

#[tokio::test]
async fn batch_keeps_order_and_ids() {
    let server = shared_server();
    let token = public_token().await;
    let records = vec![
        record(GUIDE_OCCP, GUIDE_TASKS),
        record("Paramedic, respond to emergencies", ""),
        record_with_id("1", "Sales assistant", ""),
    ];

    let response = server.coder().await.code(authorized(code_batch("osca", records), &token)).await.unwrap().into_inner();

    assert_eq!(response.responses.len(), 3);
    assert_eq!(response.responses[0].result[0].code_category, "273333");
    assert_eq!(response.responses[1].input.as_ref().unwrap().occp_text, "Paramedic, respond to emergencies");
    assert_eq!(response.responses[2].record_id.as_deref(), Some("1"));
    assert!(!response.model_id.is_empty());
    for coded in &response.responses {
        match coded.code_status() {
            pb::CodeStatus::Successful => {
                assert!(!coded.result.is_empty(), "{coded:?}");
                assert!(coded.suggestions.is_empty(), "{coded:?}");
            }
            pb::CodeStatus::Unsuccessful => {
                assert!(coded.result.is_empty(), "{coded:?}");
                assert_eq!(coded.suggestions.len(), 3, "{coded:?}");
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
}

#[tokio::test]
async fn unsuccessful_record_gets_requested_suggestions() {
    let server = shared_server();
    let token = public_token().await;
    let mut request = code_one("osca", record("xyzzy plugh", ""));
    request.number_of_suggestions = Some(5);

    let response = server.coder().await.code(authorized(request, &token)).await.unwrap().into_inner();

    let coded = &response.responses[0];
    assert_eq!(coded.code_status(), pb::CodeStatus::Unsuccessful);
    assert!(coded.result.is_empty());
    assert_eq!(coded.suggestions.len(), 5);
    assert!(coded.suggestions.iter().all(|suggestion| suggestion.code_category.len() == 6));
    assert!(coded.suggestions.windows(2).all(|pair| pair[0].code_confidence >= pair[1].code_confidence));
}

#[tokio::test]
async fn named_model_is_used() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;
    let latest = coder
        .get_latest_model(authorized(pb::GetLatestModelRequest { topic: "anzsco".into() }, &token))
        .await
        .unwrap()
        .into_inner();
    let mut request = code_one("anzsco", record(ANZSCO_OCCP, ANZSCO_TASKS));
    request.model_id = Some(latest.model_id.to_uppercase());

    let response = coder.code(authorized(request, &token)).await.unwrap().into_inner();

    assert_eq!(response.model_id, latest.model_id);
    assert_eq!(response.responses[0].result[0].code_category, "261313");
}

#[tokio::test]
async fn responses_carry_request_id() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;

    let success = coder.list_topics(authorized(pb::ListTopicsRequest {}, &token)).await.unwrap();
    let failure = coder.list_models(authorized(pb::ListModelsRequest { topic: "isco".into() }, &token)).await.unwrap_err();

    let success_id = success.metadata().get(REQUEST_ID_HEADER).expect("x-request-id on success").to_str().unwrap();
    let failure_id = failure.metadata().get(REQUEST_ID_HEADER).expect("x-request-id on error").to_str().unwrap();
    assert!(uuid::Uuid::parse_str(success_id).is_ok());
    assert_ne!(success_id, failure_id);
    assert_eq!(failure.get_details_request_info().unwrap().request_id, failure_id);
}

#[tokio::test]
async fn unknown_topic_is_not_found() {
    let server = shared_server();
    let token = public_token().await;

    let status = server.coder().await.code(authorized(code_one("isco", record(GUIDE_OCCP, "")), &token)).await.unwrap_err();

    assert_status(&status, Code::NotFound, "The specified topic does not exist", "TOPIC_NOT_FOUND", "occoder");
    assert_eq!(status.get_details_error_info().unwrap().metadata["topic"], "isco");
}

#[tokio::test]
async fn unknown_model_is_not_found() {
    let server = shared_server();
    let token = public_token().await;
    let mut request = code_one("osca", record(GUIDE_OCCP, ""));
    request.model_id = Some("00000000-0000-0000-0000-000000000000".into());

    let status = server.coder().await.code(authorized(request, &token)).await.unwrap_err();

    assert_status(&status, Code::NotFound, "The specified model does not exist", "MODEL_NOT_FOUND", "occoder");
}

#[tokio::test]
async fn model_of_other_topic_fails_precondition() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;
    let anzsco = coder
        .get_latest_model(authorized(pb::GetLatestModelRequest { topic: "anzsco".into() }, &token))
        .await
        .unwrap()
        .into_inner();
    let mut request = code_one("osca", record(GUIDE_OCCP, ""));
    request.model_id = Some(anzsco.model_id.clone());

    let status = coder.code(authorized(request, &token)).await.unwrap_err();

    assert_status(
        &status,
        Code::FailedPrecondition,
        "Selected model does not match the input topic.",
        "MODEL_TOPIC_MISMATCH",
        "occoder",
    );
    assert_eq!(status.get_details_error_info().unwrap().metadata["model_id"], anzsco.model_id);
}

#[tokio::test]
async fn empty_batch_is_invalid() {
    let server = shared_server();
    let token = public_token().await;

    let status = server.coder().await.code(authorized(code_batch("osca", vec![]), &token)).await.unwrap_err();

    assert_status(&status, Code::InvalidArgument, "Batch input contained no records", "EMPTY_BATCH", "occoder");
    assert_eq!(violation_fields(&status), ["records"]);
}

#[tokio::test]
async fn records_outside_length_limits_fail_batch() {
    let server = shared_server();
    let token = public_token().await;
    let records = vec![record(GUIDE_OCCP, GUIDE_TASKS), record("ab", ""), record(&"a".repeat(60), &"b".repeat(41))];

    let status = server.coder().await.code(authorized(code_batch("osca", records), &token)).await.unwrap_err();

    assert_status(
        &status,
        Code::InvalidArgument,
        "There are record(s) outside the min or max char limit:",
        "RECORD_LENGTH_OUT_OF_RANGE",
        "occoder",
    );
    assert_eq!(
        status.message(),
        "There are record(s) outside the min or max char limit:\n\
         Record with index 1 has a total text length under 3 min: occp_text and tasks_text together have 2 characters; \
         give a job title or tasks of at least 3 characters\n\
         Record with index 2 has a total text length over 100 max: occp_text and tasks_text together have 101 characters; \
         shorten the text to at most 100 characters"
    );
    assert_eq!(violation_fields(&status), ["records[1].occp_text", "records[2].occp_text"]);
}

#[tokio::test]
async fn non_ascii_record_is_invalid_body() {
    let server = shared_server();
    let token = public_token().await;
    let records = vec![record(GUIDE_OCCP, ""), record("nurse", "caring for patients"), record("caf\u{e9} owner", "")];

    let status = server.coder().await.code(authorized(code_batch("osca", records), &token)).await.unwrap_err();

    assert_status(&status, Code::InvalidArgument, "Invalid request body", "INVALID_REQUEST_BODY", "occoder");
    assert_eq!(violation_fields(&status), ["records[2].occp_text"]);
}

#[tokio::test]
async fn request_shape_errors_are_invalid_body() {
    let server = shared_server();
    let token = public_token().await;
    let mut coder = server.coder().await;
    let mut too_many_suggestions = code_one("osca", record(GUIDE_OCCP, ""));
    too_many_suggestions.number_of_suggestions = Some(17);
    let mut both = code_batch("osca", vec![record(GUIDE_OCCP, "")]);
    both.record = Some(record(GUIDE_OCCP, ""));
    let too_many_records = code_batch("osca", vec![record(GUIDE_OCCP, ""); 301]);

    let cases = [(too_many_suggestions, "number_of_suggestions"), (both, "record"), (too_many_records, "records")];
    for (request, field) in cases {
        let status = coder.code(authorized(request, &token)).await.unwrap_err();

        assert_status(&status, Code::InvalidArgument, "Invalid request body", "INVALID_REQUEST_BODY", "occoder");
        assert_eq!(violation_fields(&status), [field]);
    }
}

#[tokio::test]
async fn batch_of_300_is_accepted() {
    let server = shared_server();
    let token = public_token().await;
    let records = (0..300).map(|i| record_with_id(&i.to_string(), ANZSCO_OCCP, ANZSCO_TASKS)).collect();

    let response = server.coder().await.code(authorized(code_batch("anzsco", records), &token)).await.unwrap().into_inner();

    assert_eq!(response.responses.len(), 300);
    assert_eq!(response.responses[299].record_id.as_deref(), Some("299"));
    assert!(response.responses.iter().all(|coded| coded.result[0].code_category == "261313"));
}

#[tokio::test]
async fn per_record_mode_codes_the_rest() {
    let server = shared_server();
    let token = public_token().await;
    let mut request = code_batch(
        "osca",
        vec![
            record_with_id("a", GUIDE_OCCP, GUIDE_TASKS),
            record_with_id("b", "ab", ""),
            record_with_id("c", "caf\u{e9} owner", ""),
            record_with_id("d", &"x".repeat(101), ""),
        ],
    );
    request.per_record_errors = true;

    let response = server.coder().await.code(authorized(request, &token)).await.unwrap().into_inner();

    let responses = &response.responses;
    assert_eq!(responses.len(), 4);
    assert_eq!(responses[0].code_status(), pb::CodeStatus::Successful);
    assert_eq!(responses[0].result[0].code_category, "273333");
    assert_eq!(responses[0].error, None);
    let too_short = responses[1].error.as_deref().unwrap();
    assert!(too_short.starts_with("Record with index 1 has a total text length under 3 min: "), "{too_short}");
    assert!(too_short.ends_with("give a job title or tasks of at least 3 characters"), "the fix follows: {too_short}");
    assert!(responses[2].error.as_deref().unwrap().starts_with("Invalid request body"));
    let too_long = responses[3].error.as_deref().unwrap();
    assert!(too_long.starts_with("Record with index 3 has a total text length over 100 max: "), "{too_long}");
    assert!(too_long.ends_with("shorten the text to at most 100 characters"), "the fix follows: {too_long}");
    for failed in &responses[1..] {
        assert_eq!(failed.code_status(), pb::CodeStatus::Unsuccessful);
        assert!(failed.result.is_empty());
        assert!(failed.suggestions.is_empty());
    }
    assert_eq!(responses[3].record_id.as_deref(), Some("d"));
}

#[tokio::test]
async fn security_contact_needs_configuration() {
    let server = shared_server();

    // Needs no token; the shared server configures no contact.
    let status = server.coder().await.get_security_contact(pb::GetSecurityContactRequest {}).await.unwrap_err();

    assert_status(&status, Code::NotFound, "no security contact", "SECURITY_CONTACT_NOT_CONFIGURED", "occoder");
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    let server = shared_server();

    let status = server.coder().await.list_topics(pb::ListTopicsRequest {}).await.unwrap_err();

    assert_status(
        &status,
        Code::Unauthenticated,
        "User is not authorized to access this resource with an explicit deny",
        "TOKEN_MISSING",
        "occoder.auth",
    );
    assert!(status.message().contains("no `authorization: Bearer <token>` metadata"), "{}", status.message());
    assert!(status.message().contains("Auth.CreateToken"), "{}", status.message());
    assert!(status.metadata().get(REQUEST_ID_HEADER).is_some());
}
