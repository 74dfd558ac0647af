terraform {
  required_providers {
    # Without this block Terraform looks for hashicorp/kamaji.
    kamaji = {
      source = "kamaji/kamaji"
    }
  }
}

variable "kamajid_ca_file" {
  description = "PEM CA that signed kamajid's serving certificate."
  type        = string
}

provider "kamaji" {
  endpoint       = "https://kamajid.kamaji-system.svc:7443"
  ca_certificate = file(var.kamajid_ca_file)
  # token: prefer KAMAJI_TOKEN (or KAMAJI_TOKEN_FILE) so the token stays out of HCL.
}
