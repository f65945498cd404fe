# One customer-managed key for what this stack encrypts at rest: the log
# groups, the secrets, the ECR repository and Redis.

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:A key policy, not an IAM policy: Resource "*" is this key alone, and the account-root statement is AWS's default that lets IAM policies grant use of the key.
  #checkov:skip=CKV_AWS_111:A key policy: Resource "*" is this key alone; the service statement is limited by the log groups' encryption context.
  #checkov:skip=CKV_AWS_356:A key policy: Resource "*" is this key alone (key policies cannot name other resources).
  # The account administers the key; IAM policies grant its use (e.g. the
  # task execution role may decrypt the secrets through Secrets Manager).
  statement {
    sid       = "AccountAdministersKey"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts this stack's log groups, and only those.
  statement {
    sid = "CloudWatchLogsUsesKey"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values = [
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/ecs/${var.name}",
        "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/vpc/${var.name}/*",
      ]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${var.name}: logs, secrets, ECR and Redis at rest"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}
