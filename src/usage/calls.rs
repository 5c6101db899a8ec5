//! Where every model call goes through: priced, admitted against the tenant's limits, bounded
//! per tenant, made (outside any transaction), and metered.
//!
//! [`MeteredLlm::call`] is the only way the pipeline calls a model. In order:
//! 1. the model must have a price (an unknown or retired model is an error before any request);
//! 2. the call's maximum is estimated (prompt size, `max_output_tokens`) and admitted by
//!    [`limits::admit`]: soft limits report, hard limits reserve or refuse;
//! 3. a per-tenant concurrency permit is taken;
//! 4. the provider is called; its retries happen inside;
//! 5. a usage event is recorded (written before the call returns, buffered only while the
//!    database cannot take it) whatever happened — success, an error that still used tokens
//!    (truncated or malformed output), an error that used none, or a refusal by a hard limit —
//!    with the exact cost of the tokens the provider reported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use uuid::Uuid;

use super::limits::{self, AdmitError, Estimate, LimitStatus};
use super::meter::{Meter, Outcome, UsageEvent};
use super::pricing::{Cost, Pricing, PricingError, Tokens};
use crate::db::{Database, DbError};
use crate::ids::{TenantId, UserId};
use crate::llm::{
    ApiKey, ConcurrencyLimiter, LlmError, LlmProvider, LlmRequest, LlmResponse, TokenUsage,
};
use crate::money::Usd;
use crate::tenants::settings::ExecutionMode;

/// Who is calling, for what, and with which key.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// The tenant that pays.
    pub tenant: TenantId,
    /// The member on whose behalf the call runs.
    pub user: UserId,
    /// The pipeline job, if any.
    pub job_id: Option<Uuid>,
    /// The pipeline stage.
    pub stage: String,
    /// The agent.
    pub agent: String,
    /// Identifies one attempt of one call: a job re-run after a crash reuses it (so the event
    /// is written once); a retry after an error uses a new one.
    pub idempotency_key: String,
    /// The platform's key (hosted mode).
    pub platform_key: Option<ApiKey>,
    /// The tenant's own key (bring-your-own-key mode).
    pub tenant_key: Option<ApiKey>,
}

/// A successful call, with where the tenant's limits stood when it was admitted.
#[derive(Debug)]
pub struct MeteredResponse {
    /// The provider's answer.
    pub response: LlmResponse,
    /// What it cost.
    pub cost: Cost,
    /// The limits at admission (WARNING and EXCEEDED states are reported, in soft mode).
    pub limits: Vec<LimitStatus>,
}

/// Why a call did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The model has no price (or is retired): nothing was sent.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// No provider of that name is configured.
    #[error("no provider {0:?} configured")]
    NoProvider(String),
    /// A hard limit refused the call.
    #[error("usage limit reached")]
    LimitExceeded(Vec<LimitStatus>),
    /// Bring-your-own-key mode without a stored key.
    #[error("this tenant uses its own API key and has none stored")]
    MissingTenantKey,
    /// The provider failed (after its retries).
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The limits could not be checked.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl CallError {
    /// Whether the same call may succeed later: the provider's transient failures (after its
    /// own retries) and transient database trouble while admitting the call.
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Llm(e) => e.is_retryable(),
            CallError::Db(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// The metered gateway to the providers.
pub struct MeteredLlm {
    db: Database,
    pricing: Arc<Pricing>,
    meter: Arc<Meter>,
    limiter: ConcurrencyLimiter,
    providers: HashMap<&'static str, Arc<dyn LlmProvider>>,
}

fn tokens(usage: &TokenUsage) -> Tokens {
    Tokens {
        input: usage.input_tokens,
        cached: usage.cached_tokens,
        output: usage.output_tokens,
        thinking: usage.thinking_tokens,
    }
}

impl MeteredLlm {
    /// A gateway over `providers` (keyed by their names).
    pub fn new(
        db: Database,
        pricing: Arc<Pricing>,
        meter: Arc<Meter>,
        limiter: ConcurrencyLimiter,
        providers: Vec<Arc<dyn LlmProvider>>,
    ) -> MeteredLlm {
        MeteredLlm {
            db,
            pricing,
            meter,
            limiter,
            providers: providers.into_iter().map(|p| (p.name(), p)).collect(),
        }
    }

    /// Calls the model of `request` for `cx`; see the module documentation for the steps.
    pub async fn call(
        &self,
        cx: &CallContext,
        request: &LlmRequest,
    ) -> Result<MeteredResponse, CallError> {
        let today = Utc::now().date_naive();
        let price = self
            .pricing
            .model(&request.model)
            .ok_or_else(|| PricingError::UnknownModel(request.model.clone()))?;
        let provider_name = price.provider.clone();
        let provider = self
            .providers
            .get(provider_name.as_str())
            .cloned()
            .ok_or_else(|| CallError::NoProvider(provider_name.clone()))?;
        // The most this call can cost: every prompt byte a token (an over-estimate), and the
        // whole output budget (thinking included).
        let max = Tokens {
            input: (request.system.len() + request.prompt.len()) as u64,
            cached: 0,
            output: u64::from(request.max_output_tokens),
            thinking: 0,
        };
        let max_cost = self
            .pricing
            .cost(&request.model, &max, ExecutionMode::Hosted, today)?;

        let admission = match limits::admit(
            &self.db,
            cx.tenant,
            cx.user,
            Estimate {
                cost: Usd(max_cost.billed.0.max(max_cost.base.0)),
                tokens: max.total() as i64,
            },
        )
        .await
        {
            Ok(admission) => admission,
            Err(AdmitError::Exceeded(statuses)) => {
                let blocked = CallContext {
                    idempotency_key: format!("{}:blocked", cx.idempotency_key),
                    ..cx.clone()
                };
                self.record(
                    &blocked,
                    request,
                    &provider_name,
                    Tokens::default(),
                    Cost {
                        base: Usd(0),
                        billed: Usd(0),
                    },
                    ExecutionMode::Hosted,
                    0,
                    Outcome::Blocked,
                    Some("limit_exceeded"),
                    None,
                )
                .await;
                return Err(CallError::LimitExceeded(statuses));
            }
            Err(AdmitError::Db(e)) => return Err(CallError::Db(e)),
        };
        let mode = admission.execution_mode;
        let key = match mode {
            ExecutionMode::ByoKey => match &cx.tenant_key {
                Some(key) => Some(key),
                None if provider_name == "offline" => None,
                None => {
                    let refused = CallContext {
                        idempotency_key: format!("{}:missing_key", cx.idempotency_key),
                        ..cx.clone()
                    };
                    self.record(
                        &refused,
                        request,
                        &provider_name,
                        Tokens::default(),
                        Cost {
                            base: Usd(0),
                            billed: Usd(0),
                        },
                        mode,
                        0,
                        Outcome::Error,
                        Some("missing_key"),
                        admission.reservation,
                    )
                    .await;
                    return Err(CallError::MissingTenantKey);
                }
            },
            ExecutionMode::Hosted => cx.platform_key.as_ref(),
        };

        let _permit = self.limiter.acquire(cx.tenant).await;
        let started = Instant::now();
        let result = provider.generate(request, key).await;
        let latency = started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let used = match &result {
            Ok(r) => tokens(&r.usage),
            Err(e) => e.usage().map(tokens).unwrap_or_default(),
        };
        // Priced above, so the model is known; a retirement passing mid-call still prices.
        let cost = self
            .pricing
            .cost(&request.model, &used, mode, today)
            .unwrap_or(Cost {
                base: Usd(0),
                billed: Usd(0),
            });
        match result {
            Ok(response) => {
                self.record(
                    cx,
                    request,
                    &provider_name,
                    used,
                    cost,
                    mode,
                    latency,
                    Outcome::Ok,
                    None,
                    admission.reservation,
                )
                .await;
                Ok(MeteredResponse {
                    response,
                    cost,
                    limits: admission.statuses,
                })
            }
            Err(error) => {
                self.record(
                    cx,
                    request,
                    &provider_name,
                    used,
                    cost,
                    mode,
                    latency,
                    Outcome::Error,
                    Some(error.kind()),
                    admission.reservation,
                )
                .await;
                Err(CallError::Llm(error))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        cx: &CallContext,
        request: &LlmRequest,
        provider: &str,
        tokens: Tokens,
        cost: Cost,
        mode: ExecutionMode,
        latency_ms: i32,
        outcome: Outcome,
        error_kind: Option<&str>,
        reservation: Option<Uuid>,
    ) {
        self.meter
            .record_durable(UsageEvent {
                tenant: cx.tenant,
                user: cx.user,
                job_id: cx.job_id,
                stage: cx.stage.clone(),
                agent: cx.agent.clone(),
                provider: provider.to_owned(),
                model: request.model.clone(),
                tokens,
                cost,
                execution_mode: mode,
                latency_ms,
                outcome,
                error_kind: error_kind.map(str::to_owned),
                idempotency_key: cx.idempotency_key.clone(),
                occurred_at: Utc::now(),
                reservation,
            })
            .await;
    }
}
